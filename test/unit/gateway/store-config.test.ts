import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../gateway/config.js';
import { LoadError } from '../../../policies/errors.js';

const parse = (lines: string[]) => parseConfig('/etc/portcullis/config.yaml', ['store:', ...lines].join('\n'));
const s3 = ['  driver: s3', '  endpoint: https://s3.example.com', '  bucket: cache', '  accessKeyId: AK'];

test('store: files by default; s3 with an endpoint, a bucket, a key id and the secret by reference', () => {
  assert.equal(parseConfig('/c.yaml', 'dataDir: d').store, undefined);
  assert.equal(parse(['  driver: fs']).store, undefined);
  assert.deepEqual(
    parse([
      ...s3,
      '  secretAccessKeyFile: secrets/s3',
      '  prefix: gw/',
      '  region: eu-west-1',
      '  pathStyle: false',
      '  tls: { ca: ca.crt }',
    ]).store,
    {
      driver: 's3',
      endpoint: 'https://s3.example.com',
      region: 'eu-west-1',
      bucket: 'cache',
      prefix: 'gw/',
      accessKeyId: 'AK',
      secretAccessKey: { file: '/etc/portcullis/secrets/s3' },
      pathStyle: false,
      tlsCa: '/etc/portcullis/ca.crt',
    },
  );
  const d = parse([...s3, '  secretAccessKeyEnv: S3_SECRET']).store;
  assert.equal(
    d?.driver === 's3' && `${d.region} ${d.prefix === ''} ${d.pathStyle} ${d.secretAccessKey.env}`,
    'us-east-1 true true S3_SECRET',
  );
});

test('store: an inline secret, credentials in the endpoint, a bad bucket or prefix, stray keys are refused by line', () => {
  for (const [bad, line] of [
    [[...s3, '  secretAccessKey: hunter2'], 6],
    [[...s3], 2],
    [
      [
        '  driver: s3',
        '  endpoint: https://u:hunter2@s3.example.com',
        '  bucket: cache',
        '  accessKeyId: AK',
        '  secretAccessKeyEnv: S',
      ],
      3,
    ],
    [
      [
        '  driver: s3',
        '  endpoint: ftp://s3.example.com',
        '  bucket: cache',
        '  accessKeyId: AK',
        '  secretAccessKeyEnv: S',
      ],
      3,
    ],
    [[...s3, '  secretAccessKeyEnv: S', '  bucket2: x'], 7],
    [
      [
        '  driver: s3',
        '  endpoint: https://s3.example.com',
        '  bucket: Bad_Bucket',
        '  accessKeyId: AK',
        '  secretAccessKeyEnv: S',
      ],
      4,
    ],
    [[...s3, '  secretAccessKeyEnv: S', '  prefix: /abs/'], 7],
    [[...s3, '  secretAccessKeyEnv: S', '  secretAccessKeyFile: f'], 6],
    [['  driver: fs', '  bucket: cache'], 3],
    [['  driver: gcs'], 2],
    [
      [
        '  driver: s3',
        '  endpoint: http://s3.local',
        '  bucket: cache',
        '  accessKeyId: AK',
        '  secretAccessKeyEnv: S',
        '  tls: { ca: c.crt }',
      ],
      7,
    ],
  ] as const) {
    try {
      parse([...bad]);
      assert.fail(`expected a LoadError for ${bad.join(' ')}`);
    } catch (e) {
      assert.ok(e instanceof LoadError && e.code === 'CONFIG_INVALID', bad.join(' '));
      assert.ok(
        e.diagnostics.some((d) => d.line === line),
        `${bad.join(' ')}: ${JSON.stringify(e.diagnostics)}`,
      );
      assert.ok(!JSON.stringify(e.diagnostics).includes('hunter2'), 'a secret is never echoed');
    }
  }
});

test('store.redirect: stored blobs by pre-signed URL, valid 10 s to an hour (default 300 s)', () => {
  const with_ = (extra: string[]) => parse([...s3, '  secretAccessKeyEnv: S', ...extra]).store;
  assert.equal(with_([]) && 'redirectSeconds' in (with_([]) ?? {}), false);
  const d = with_(['  redirect: {}']);
  assert.equal(d?.driver === 's3' && d.redirectSeconds, 300);
  const e = with_(['  redirect: { expiresSeconds: 60 }']);
  assert.equal(e?.driver === 's3' && e.redirectSeconds, 60);
  for (const bad of [['  redirect: { expiresSeconds: 5 }'], ['  redirect: { ttl: 60 }']])
    assert.throws(
      () => with_(bad),
      (err: unknown) => err instanceof LoadError && err.code === 'CONFIG_INVALID',
      bad.join(' '),
    );
});
