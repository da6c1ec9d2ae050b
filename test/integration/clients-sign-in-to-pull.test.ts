import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * clientAuth with tokens off: basic authentication against an htpasswd file made by the real
 * `htpasswd -B`, and pull rights per scope. skopeo signs in and pulls; a user without
 * the right, a wrong password and no credentials are refused; a refusal reads the same
 * for a repository that exists, one that does not and an upstream that is not
 * configured; the gateway's public key stays public; weak hashes are refused at start.
 */
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('clients sign in to pull', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const dir = tempDir('portcullis-auth-');
  const htpasswd = join(dir.path, 'htpasswd');
  const alicePw = 'alice-pw-5d1e';
  before(async () => {
    world = await buildSignedWorld();
    await run('htpasswd', ['-cbB', htpasswd, 'alice', alicePw]);
    await run('htpasswd', ['-bB', htpasswd, 'bob', 'bob-pw-77a0']);
    gw = await gatewayForWorld(world, {
      extraConfig: [
        'clientAuth:',
        '  htpasswd: htpasswd',
        '  tokens: false',
        '  groups: { builders: [alice] }',
        '  access:',
        `    - { scope: "${world.registry.host}/test", groups: [builders] }`,
        `    - { scope: "${world.registry.host}/public", users: ["*"] }`,
      ].join('\n'),
      files: { htpasswd: readFileSync(htpasswd) },
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    dir.cleanup();
  });

  const get = (path: string, authorization?: string) =>
    fetch(`${gw.url}${path}`, { headers: { accept: OCI, ...(authorization ? { authorization } : {}) } });

  test('skopeo signs in and pulls; others are refused alike, whatever exists', async () => {
    const copy = (creds: string) =>
      run(
        'skopeo',
        [
          '--insecure-policy',
          'copy',
          '--src-tls-verify=false',
          '--src-creds',
          creds,
          `docker://${gw.host}/up/test/signed:1`,
          `dir:${join(dir.path, creds.split(':')[0] as string)}`,
        ],
        { allowFail: true },
      );
    const ok = await copy(`alice:${alicePw}`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.notEqual((await copy('bob:bob-pw-77a0')).code, 0, 'bob may not pull from test/');
    assert.notEqual((await copy('alice:wrong')).code, 0);

    const none = await get('/v2/');
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Basic realm="portcullis"');
    await none.arrayBuffer();
    const wrong = await get('/v2/up/test/signed/manifests/1', basic('alice', 'wrong'));
    assert.equal(wrong.status, 401);
    await wrong.arrayBuffer();

    const bob = basic('bob', 'bob-pw-77a0');
    const answers = [];
    for (const path of [
      '/v2/up/test/signed/manifests/1',
      '/v2/up/test/no-such-image/manifests/1',
      '/v2/not-configured/app/manifests/1',
      `/v2/up/test/signed/blobs/sha256:${'0'.repeat(64)}`,
    ]) {
      const res = await get(path, bob);
      answers.push([res.status, await res.text()]);
    }
    assert.deepEqual(answers[0]?.[0], 403);
    for (const a of answers) assert.deepEqual(a, answers[0], 'one answer, whether it exists or not');
    // users: ['*'] lets any user who signed in: past access control, the policy decides (and rejects it here).
    const mayList = await get('/v2/up/public/anything/tags/list', bob);
    const reason = ((await mayList.json()) as { errors: { detail?: { reason?: string } }[] }).errors[0]?.detail?.reason;
    assert.notEqual(reason, 'access.denied');
    const denied = JSON.parse(answers[0]?.[1] as string) as { errors: { detail?: { reason?: string } }[] };
    assert.equal(denied.errors[0]?.detail?.reason, 'access.denied');

    const pub = await get('/v2/_portcullis/gateway.pub');
    assert.equal(pub.status, 200, 'the gateway key is public: clients pin it');
    await pub.arrayBuffer();
    assert.ok(!JSON.stringify(gw.logs).includes(alicePw), 'a password is never logged');
  });

  test('an htpasswd entry that is not bcrypt stops the gateway at start', async () => {
    const md5 = (await run('htpasswd', ['-nbm', 'carol', 'carol-pw'])).stdout;
    await assert.rejects(
      gatewayForWorld(world, {
        extraConfig: `clientAuth:\n  htpasswd: htpasswd\n  access:\n    - { scope: "x.example", users: ["*"] }`,
        files: { htpasswd: md5 },
      }),
      (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && !err.message.includes('$apr1$'),
    );
  });
});
