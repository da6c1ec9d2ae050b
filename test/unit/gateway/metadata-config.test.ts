import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../gateway/config.js';
import { LoadError } from '../../../policies/errors.js';

const parse = (lines: string[]) => parseConfig('/etc/portcullis/config.yaml', ['metadata:', ...lines].join('\n'));

test('metadata: SQLite by default; postgres with a URL, a password reference, a pool size and a TLS CA', () => {
  // undefined: the embedded SQLite file under dataDir.
  assert.equal(parseConfig('/c.yaml', 'dataDir: d').metadata, undefined);
  assert.equal(parse(['  driver: sqlite']).metadata, undefined);
  assert.deepEqual(
    parse([
      '  driver: postgres',
      '  url: postgres://portcullis@db.example.com:6432/cache',
      '  passwordFile: secrets/pg',
      '  poolSize: 20',
      '  tls: { ca: tls/db-ca.crt }',
    ]).metadata,
    {
      driver: 'postgres',
      host: 'db.example.com',
      port: 6432,
      database: 'cache',
      user: 'portcullis',
      password: { file: '/etc/portcullis/secrets/pg' },
      poolSize: 20,
      tlsCa: '/etc/portcullis/tls/db-ca.crt',
    },
  );
  const d = parse(['  driver: postgres', '  url: postgresql://gw@[::1]/meta', '  passwordEnv: PGPASS']).metadata;
  assert.equal(
    d?.driver === 'postgres' && `${d.host} ${d.port} ${d.poolSize} ${d.password?.env}`,
    '::1 5432 10 PGPASS',
  );
});

test('metadata: a password in the URL, a query, no user or database, both password references, stray keys are refused by line', () => {
  for (const [bad, line] of [
    [['  driver: postgres', '  url: postgres://u:hunter2@db/x'], 3],
    [['  driver: postgres', '  url: postgres://u@db/x?sslmode=disable'], 3],
    [['  driver: postgres', '  url: postgres://db/x'], 3],
    [['  driver: postgres', '  url: postgres://u@db/'], 3],
    [['  driver: postgres', '  url: mysql://u@db/x'], 3],
    [['  driver: postgres'], 1],
    [['  driver: postgres', '  url: postgres://u@db/x', '  passwordFile: a', '  passwordEnv: B'], 5],
    [['  driver: postgres', '  url: postgres://u@db/x', '  poolSize: 0'], 4],
    [['  driver: postgres', '  url: postgres://u@db/x', '  tls: { ca: 3 }'], 4],
    [['  driver: sqlite', '  url: postgres://u@db/x'], 3],
    [['  driver: mongo'], 2],
    [['  driver: postgres', '  url: postgres://%zz@db/x'], 3],
    [['  driver: postgres', '  url: postgres://u@db:0/x'], 3],
  ] as const) {
    try {
      parse([...bad]);
      assert.fail(`expected a LoadError for ${bad.join(' ')}`);
    } catch (e) {
      assert.ok(e instanceof LoadError && e.code === 'CONFIG_INVALID', bad.join(' '));
      assert.equal(e.diagnostics[0]?.line, line, bad.join(' '));
      assert.ok(!JSON.stringify(e.diagnostics).includes('hunter2'), 'a password in the URL is never echoed');
    }
  }
});
