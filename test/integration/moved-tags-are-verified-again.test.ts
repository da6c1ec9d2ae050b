import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cosignKeyPair, cosignSign, type CosignKey } from '../helpers/cosign.js';
import { decisionLogs, startTestGateway, storeSnapshot, type TestGateway } from '../helpers/gateway.js';
import { buildImage, pushImage } from '../helpers/images.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { worldPolicy } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('a tag that moves upstream is resolved again and the new digest verified before it is served', () => {
  let registry: TestRegistry;
  let gw: TestGateway;
  let key: CosignKey;
  const dir = tempDir('portcullis-move-');
  const layout = join(dir.path, 'layout');

  before(async () => {
    registry = await startRegistry();
    key = await cosignKeyPair(dir.path, 'trusted');
    for (const t of ['one', 'two', 'three']) await buildImage(layout, t, { text: t });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: worldPolicy(registry.host),
      files: { 'trusted.pub': readFileSync(key.pub) },
    });
  });
  after(async () => {
    await gw?.stop();
    await registry?.stop();
    dir.cleanup();
  });

  const pull = async () => {
    const res = await fetch(`${gw.url}/v2/up/test/moving/manifests/latest`, { headers: { accept: OCI } });
    await res.arrayBuffer();
    return { status: res.status, digest: res.headers.get('docker-content-digest') };
  };

  test('signed → unsigned → signed', async () => {
    const one = await pushImage(layout, 'one', `${registry.host}/test/moving:latest`);
    await cosignSign(key, `${registry.host}/test/moving@${one}`);
    assert.deepEqual(await pull(), { status: 200, digest: one });

    // The tag now points at an unsigned image: denied, and the old content is not served in its place.
    const two = await pushImage(layout, 'two', `${registry.host}/test/moving:latest`);
    const before = await storeSnapshot(gw);
    assert.equal((await pull()).status, 403);
    assert.deepEqual(await storeSnapshot(gw), before);
    assert.ok(decisionLogs(gw).some((l) => l.digest === two && l.allowed === false));

    // Moved again, to a signed image: the new digest is served.
    const three = await pushImage(layout, 'three', `${registry.host}/test/moving:latest`);
    await cosignSign(key, `${registry.host}/test/moving@${three}`);
    assert.deepEqual(await pull(), { status: 200, digest: three });
    // The first image stays available by digest: it was admitted.
    const byDigest = await fetch(`${gw.url}/v2/up/test/moving/manifests/${one}`, { headers: { accept: OCI } });
    assert.equal(byDigest.status, 200);
    await byDigest.arrayBuffer();
  });
});
