import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamError } from '../../../oci/errors.js';
import { parseChallenges } from '../../../oci/registry-client/challenge.js';
import { checkRealm } from '../../../oci/registry-client/realm.js';

test('WWW-Authenticate with several challenges and quoted commas', () => {
  const c = parseChallenges('Bearer realm="https://auth.example/token",service="reg, one",scope="repository:a/b:pull", Basic realm="x"');
  assert.equal(c.length, 2);
  assert.deepEqual({ ...c[0]?.params }, { realm: 'https://auth.example/token', service: 'reg, one', scope: 'repository:a/b:pull' });
  assert.equal(c[1]?.scheme, 'basic');
});

const upstream = new URL('https://registry.example:5000');
const allowed: [string, readonly string[] | undefined][] = [
  ['https://registry.example:5000/token', undefined],
  ['https://auth.example/token', undefined],
  ['http://127.0.0.1:9999/token', ['http://127.0.0.1:9999']],
];
for (const [realm, list] of allowed) {
  test(`realm ${realm} is allowed`, () => {
    assert.equal(checkRealm(realm, upstream, list).origin, new URL(realm).origin);
  });
}

const refused: [string, readonly string[] | undefined][] = [
  ['http://169.254.169.254/latest/meta-data/', undefined],
  ['https://127.0.0.1:2375/', undefined],
  ['https://[::ffff:169.254.169.254]/', undefined],
  ['https://0x7f.1/', undefined],
  ['https://10.0.0.8/token', undefined],
  ['https://user:pass@auth.example/token', undefined],
  ['file:///etc/passwd', undefined],
  ['/token', undefined],
  ['http://auth.example/token', undefined],
  ['https://auth.example/token', ['https://other.example']],
];
for (const [realm, list] of refused) {
  test(`realm ${realm} is UPSTREAM_AUTH_REALM_REJECTED`, () => {
    assert.throws(() => checkRealm(realm, upstream, list), (e: unknown) => e instanceof UpstreamError && e.code === 'UPSTREAM_AUTH_REALM_REJECTED');
  });
}
