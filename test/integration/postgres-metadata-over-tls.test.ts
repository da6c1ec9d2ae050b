import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initGateway } from '../../gateway/init.js';
import { openMetadataStore } from '../../gateway/metadata/open-metadata-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `metadata.tls.ca`: the connection to PostgreSQL is TLS and the server's certificate
 * must chain to that CA; another CA, or no TLS where the server demands it, is refused
 * before any query (so the password never crosses in the clear).
 */
describe('the PostgreSQL metadata connection over TLS', () => {
  let pg: TestPostgres;
  const tmp = tempDir('portcullis-pg-tls-');
  before(async () => {
    pg = await startPostgres({ tls: true });
  });
  after(async () => {
    await pg?.stop();
    tmp.cleanup();
  });

  const config = async (tlsCa: string | undefined) => {
    const db = await pg.createDatabase();
    const url = new URL(db.url);
    return {
      dataDir: tmp.path,
      metadata: {
        driver: 'postgres' as const,
        host: url.hostname,
        port: Number(url.port),
        database: db.name,
        user: decodeURIComponent(url.username),
        password: { file: pg.passwordFile },
        poolSize: 2,
        tlsCa,
      },
    };
  };

  test('a server whose certificate chains to the configured CA is used', async () => {
    const store = await openMetadataStore(await config(pg.caFile));
    await store.setTag('up/app', 'v1', `sha256:${'a'.repeat(64)}`, 1000);
    assert.equal((await store.tag('up/app', 'v1'))?.digest, `sha256:${'a'.repeat(64)}`);
    await store.close();
  });

  test('a certificate from another CA is refused', async () => {
    const other = initGateway(join(tmp.path, 'other'), { hosts: ['127.0.0.1'] });
    await assert.rejects(openMetadataStore(await config(other.caCert)), (err: Error & { code?: string }) =>
      ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT'].includes(
        err.code ?? '',
      ),
    );
  });

  test('without tls the server refuses the password exchange (hostssl only)', async () => {
    await assert.rejects(
      openMetadataStore(await config(undefined)),
      (err: Error & { code?: string }) => err.code === '28000',
    );
  });

  test('an unreadable CA file is a config error', async () => {
    await assert.rejects(
      openMetadataStore(await config(join(tmp.path, 'missing.crt'))),
      (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID',
    );
  });
});
