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
  opts: { readOnlyTool?: boolean } = {},
): Promise<MetadataStore> {
  const m = config.metadata;
  if (m === undefined || m.driver === 'sqlite') return new SqliteMetadataStore(join(config.dataDir, 'metadata.db'));
  return PostgresMetadataStore.open({
    host: m.host,
    port: m.port,
    database: m.database,
    user: m.user,
    password: m.password === undefined ? undefined : password(m.password, env),
    poolSize: m.poolSize,
    tlsCa: m.tlsCa === undefined ? undefined : readCa(m.tlsCa),
    // policy explain and tags read a running gateway's database: they never migrate it.
    migrate: opts.readOnlyTool !== true,
  });
}

function password(ref: { file?: string; env?: string }, env: NodeJS.ProcessEnv): string {
  try {
    return readSecret(ref, env);
  } catch (err) {
    if (err instanceof LoadError) throw err;
    throw new LoadError('CONFIG_INVALID', [
      {
        file: ref.file ?? '(environment)',
        line: 1,
        column: 1,
        message: `metadata.passwordFile cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      },
    ]);
  }
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
