import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LoadError } from '../../policies/errors.js';
import { readSecret } from '../config.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { S3BlobStore } from './s3-blob-store.js';
import type { StoreConfig } from './store-config.js';

/** The BlobStore a config names: files under `<dataDir>/store`, or an S3-compatible bucket (spooled under `<dataDir>/spool`). */
export async function openBlobStore(
  config: { readonly store?: StoreConfig | undefined; readonly dataDir: string },
  env: NodeJS.ProcessEnv = process.env,
  opts: { tool?: boolean } = {},
): Promise<BlobStore> {
  const s = config.store;
  // A tool (fsck) may run beside the gateway: it leaves the gateway's fills in progress alone.
  if (s === undefined || s.driver === 'fs')
    return FsBlobStore.open(join(config.dataDir, 'store'), { keepStaged: opts.tool === true });
  let ca: string[] = [];
  if (s.tlsCa !== undefined) {
    try {
      ca = [readFileSync(s.tlsCa, 'utf8')];
    } catch (err) {
      throw new LoadError('CONFIG_INVALID', [
        { file: s.tlsCa, line: 1, column: 1, message: `store.tls.ca cannot be read: ${(err as Error).message}` },
      ]);
    }
  }
  return S3BlobStore.open({
    endpoint: s.endpoint,
    region: s.region,
    bucket: s.bucket,
    prefix: s.prefix,
    accessKeyId: s.accessKeyId,
    secretAccessKey: readSecret(s.secretAccessKey, env),
    forcePathStyle: s.pathStyle,
    spoolDir: join(config.dataDir, 'spool'),
    keepSpool: opts.tool === true,
    ca,
  });
}
