import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

describe('skopeo copies admitted images through the gateway with their digests intact', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-out-');

  let stop: () => Promise<void> = async () => undefined;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
  });
  after(async () => {
    await stop();
    out.cleanup();
  });

  const copy = (repo: string, dest: string, extra: string[] = []) =>
    run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      ...extra,
      `docker://${gw.host}/up/${repo}:1`,
      `dir:${dest}`,
    ]);
  const sha = (file: string) => `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;

  test('an OCI image signed with the trusted key arrives with the upstream digest', async () => {
    const dest = join(out.path, 'oci');
    await copy('test/signed', dest);
    assert.equal(sha(join(dest, 'manifest.json')), world.digests.signed);
    const d = decisionLogs(gw).find((l) => l.digest === world.digests.signed);
    assert.equal(d?.allowed, true);
  });

  test('a Docker schema 2 image arrives byte-exact', async () => {
    const dest = join(out.path, 'docker');
    await copy('test/docker', dest);
    assert.equal(sha(join(dest, 'manifest.json')), world.digests.docker);
  });

  test('a multi-arch index and its children arrive when the index is signed', async () => {
    const dest = join(out.path, 'multi');
    await copy('test/multi', dest, ['--all']);
    assert.equal(sha(join(dest, 'manifest.json')), world.digests.multi);
    const index = JSON.parse(readFileSync(join(dest, 'manifest.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(index.manifests.length, 2);
  });
});
