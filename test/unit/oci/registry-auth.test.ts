import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamError } from '../../../oci/errors.js';
import { parseChallenges } from '../../../oci/registry-client/challenge.js';
import { checkRealm, checkRedirect, publicOnlyLookup } from '../../../oci/registry-client/realm.js';

test('WWW-Authenticate with several challenges and quoted commas', () => {
  const c = parseChallenges(
    'Bearer realm="https://auth.example/token",service="reg, one",scope="repository:a/b:pull", Basic realm="x"',
  );
  assert.equal(c.length, 2);
  assert.deepEqual(
    { ...c[0]?.params },
    { realm: 'https://auth.example/token', service: 'reg, one', scope: 'repository:a/b:pull' },
  );
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
    assert.equal(checkRealm(realm, upstream, list).url.origin, new URL(realm).origin);
  });
}

test('credentials go to the registry and configured realms only', () => {
  assert.equal(checkRealm('https://registry.example:5000/token', upstream, undefined).trusted, true);
  assert.equal(checkRealm('https://auth.example/token', upstream, undefined).trusted, false);
  assert.equal(checkRealm('https://auth.example/token', upstream, ['https://auth.example']).trusted, true);
});

const redirects: [string, boolean | undefined][] = [
  ['https://registry.example:5000/blob', true],
  ['https://storage.example/bucket/x?sig=1', false],
  ['https://10.1.2.3/x', undefined],
  ['http://storage.example/x', undefined],
  ['https://u:p@storage.example/x', undefined],
  ['http://registry.example:2375/containers/json', undefined],
];
for (const [location, trusted] of redirects) {
  test(`redirect to ${location}: ${trusted === undefined ? 'refused' : trusted ? 'followed as the registry' : 'followed without credentials, DNS-checked'}`, () => {
    if (trusted === undefined) {
      assert.throws(
        () => checkRedirect(location, upstream, upstream, undefined),
        (e: unknown) => e instanceof UpstreamError && e.code === 'UPSTREAM_REDIRECT_REJECTED',
      );
    } else {
      assert.equal(checkRedirect(location, upstream, upstream, undefined).trusted, trusted);
    }
  });
}

test('a name that resolves to an internal address is refused by the public-only lookup', async () => {
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
    publicOnlyLookup('localhost', {}, (e) => resolve(e)),
  );
  assert.equal(err?.code, 'EPORTCULLIS_INTERNAL');
});

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
    assert.throws(
      () => checkRealm(realm, upstream, list),
      (e: unknown) => e instanceof UpstreamError && e.code === 'UPSTREAM_AUTH_REALM_REJECTED',
    );
  });
}
