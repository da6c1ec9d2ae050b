import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

describe('a docker-registry behind htpasswd basic auth, with credentials by reference', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const secrets = tempDir('portcullis-secret-');
  const password = 's3cret-Pa55';

  before(async () => {
    world = await buildSignedWorld({ basicAuth: { user: 'alice', password } });
    writeFileSync(join(secrets.path, 'password'), `${password}\n`, { mode: 0o600 });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up, username: alice, passwordFile: "${join(secrets.path, 'password')}" }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    secrets.cleanup();
  });

  test('skopeo copies a signed image; the password appears in no log line', async () => {
    const out = tempDir('portcullis-out-');
    try {
      await run('skopeo', [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/test/signed:1`,
        `dir:${out.path}`,
      ]);
    } finally {
      out.cleanup();
    }
    const logText = JSON.stringify(gw.logs);
    assert.ok(!logText.includes(password));
    assert.ok(!logText.includes(Buffer.from(`alice:${password}`).toString('base64')));
  });

  test('without credentials the upstream refuses and the client sees UNAUTHORIZED', async () => {
    const anon = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
    });
    try {
      const res = await fetch(`${anon.url}/v2/up/test/signed/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(res.status, 502);
      assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED');
    } finally {
      await anon.stop();
    }
  });
});
