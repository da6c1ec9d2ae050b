import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cosignVerify } from '../helpers/cosign.js';
import type { TestGateway } from '../helpers/gateway.js';
import { sigTag, startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';

describe('cosign verify pointed at the gateway', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
  });
  after(async () => {
    await stop();
  });

  test('succeeds for an admitted image, reading the signature through the gateway', async () => {
    const r = await cosignVerify(world.trusted, `${gw.host}/up/test/signed@${world.digests.signed}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(world.digests.signed));
  });

  test('fails with the other key', async () => {
    const r = await cosignVerify(world.other, `${gw.host}/up/test/signed@${world.digests.signed}`);
    assert.notEqual(r.code, 0);
  });

  test('the .sig tag of an image the policy denies is not served', async () => {
    const res = await fetch(`${gw.url}/v2/up/test/otherkey/manifests/${sigTag(world.digests.otherkey)}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'DENIED');
  });

  test('an unsigned image dressed up as a .sig tag is not served as an attachment', async () => {
    // Admit test/docker first, then put the decoy (a real, unsigned image) at its .sig tag.
    const admitted = await fetch(`${gw.url}/v2/up/test/docker/manifests/1`, {
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(admitted.status, 200);
    await admitted.arrayBuffer();
    const decoy = await fetch(`${world.registry.url}/v2/test/wrongdigest/manifests/decoy`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const bytes = Buffer.from(await decoy.arrayBuffer());
    const m = JSON.parse(bytes.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
      const mount = await fetch(
        `${world.registry.url}/v2/test/docker/blobs/uploads/?mount=${d}&from=test/wrongdigest`,
        { method: 'POST' },
      );
      assert.equal(mount.status, 201);
    }
    const put = await fetch(`${world.registry.url}/v2/test/docker/manifests/${sigTag(world.digests.docker)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: bytes,
    });
    assert.equal(put.status, 201);
    const res = await fetch(`${gw.url}/v2/up/test/docker/manifests/${sigTag(world.digests.docker)}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'MANIFEST_INVALID');
    const layer = await fetch(`${gw.url}/v2/up/test/docker/blobs/${m.layers[1]?.digest}`);
    assert.equal(layer.status, 404);
    await layer.arrayBuffer();
  });
});
