import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSecret } from '../config.js';
import { LoadError } from '../../policies/errors.js';
import type { MetadataStore } from './metadata-store.js';
import type { MetadataConfig } from './metadata-config.js';
import { PostgresMetadataStore } from './postgres-metadata-store.js';
import { SqliteMetadataStore } from './sqlite-metadata-store.js';

/** The MetadataStore a config names: SQLite under the data directory, or PostgreSQL. */
export async function openMetadataStore(
  config: { readonly metadata?: MetadataConfig | undefined; readonly dataDir: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<MetadataStore> {
  const m = config.metadata;
  if (m === undefined || m.driver === 'sqlite') return new SqliteMetadataStore(join(config.dataDir, 'metadata.db'));
  return PostgresMetadataStore.open({
    host: m.host,
    port: m.port,
    database: m.database,
    user: m.user,
    password: m.password === undefined ? undefined : readSecret(m.password, env),
    poolSize: m.poolSize,
    tlsCa: m.tlsCa === undefined ? undefined : readCa(m.tlsCa),
  });
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new LoadError('CONFIG_INVALID', [
      { file, line: 1, column: 1, message: `metadata.tls.ca cannot be read: ${(err as Error).message}` },
    ]);
  }
}
