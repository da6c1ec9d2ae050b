import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { RunnerError } from './errors.js';
import type { ImageCache } from './image-cache.js';
import { extractConfined } from './unpack/confined.js';

/**
 * Unpacked images, cached by manifest digest (and id range). An entry is built in a
 * temporary directory and renamed into place only when every layer applied and
 * matched its diffID; a half-built tree is never found under the final name.
 * Callers use an entry only after the attestation check of that same run.
 */
export interface RootfsOptions {
  readonly keepSetuid: boolean;
  readonly idMap: { idBase: number; idSize: number } | undefined;
  readonly maxLayerBytes: number;
}

/** A private, writable rootfs for one container (under `bundle`), removed with it. */
export async function privateRootfs(bundle: string, cache: ImageCache, layers: readonly Descriptor[], diffIds: readonly string[], opts: RootfsOptions): Promise<string> {
  if (layers.length !== diffIds.length) throw new RunnerError('IMAGE_INVALID', `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`);
  const root = join(bundle, 'rootfs');
  mkdirSync(root, { recursive: true, mode: 0o755 });
  await extractConfined({
    root, layers: layers.map((l, i) => ({ path: cache.blobPath(l.digest), diffId: diffIds[i] as string })),
    keepSetuid: opts.keepSetuid, maxEntries: 1_000_000, maxLayerBytes: opts.maxLayerBytes, idMap: opts.idMap,
  });
  return root;
}

export async function prepareRootfs(dataDir: string, cache: ImageCache, manifestDigest: Digest, layers: readonly Descriptor[], diffIds: readonly string[], opts: RootfsOptions): Promise<string> {
  if (layers.length !== diffIds.length) throw new RunnerError('IMAGE_INVALID', `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`);
  const dir = join(dataDir, 'rootfs');
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
  const name = `${manifestDigest.hex}${opts.idMap ? `-${opts.idMap.idBase}` : ''}${opts.keepSetuid ? '-setuid' : ''}`;
  const final = join(dir, name);
  if (existsSync(join(final, 'rootfs'))) return join(final, 'rootfs');
  const tmp = join(dir, `.tmp-${randomUUID()}`);
  mkdirSync(join(tmp, 'rootfs'), { recursive: true, mode: 0o755 });
  chmodSync(tmp, 0o711);
  try {
    await extractConfined({
      root: join(tmp, 'rootfs'),
      layers: layers.map((l, i) => ({ path: cache.blobPath(l.digest), diffId: diffIds[i] as string })),
      keepSetuid: opts.keepSetuid, maxEntries: 1_000_000, maxLayerBytes: opts.maxLayerBytes, idMap: opts.idMap,
    });
    renameSync(tmp, final);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(join(final, 'rootfs'))) return join(final, 'rootfs');
    throw err;
  }
  return join(final, 'rootfs');
}
