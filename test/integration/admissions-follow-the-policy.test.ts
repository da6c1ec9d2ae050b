import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startTestGateway } from '../helpers/gateway.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('an admission holds only under the policy that made it', () => {
  let world: SignedWorld;
  const data = tempDir('portcullis-data-');

  before(async () => {
    world = await buildSignedWorld();
  });
  after(async () => {
    await world?.stop();
    data.cleanup();
  });

  test('after a restart with the key removed, cached content of the signed image is refused', async () => {
    const upstreamsYaml = `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`;
    const first = await startTestGateway({
      upstreamsYaml,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
      dataDir: data.path,
    });
    let layer: string;
    try {
      const m = await fetch(`${first.url}/v2/up/test/signed/manifests/1`, { headers: { accept: OCI } });
      assert.equal(m.status, 200);
      layer = ((await m.json()) as { layers: { digest: string }[] }).layers[0]?.digest as string;
      const b = await fetch(`${first.url}/v2/up/test/signed/blobs/${layer}`);
      assert.equal(b.status, 200);
      await b.arrayBuffer();
    } finally {
      await first.stop();
    }
    // The same data directory, now with a policy that trusts only the other key.
    const second = await startTestGateway({
      upstreamsYaml,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.other.pub) },
      dataDir: data.path,
    });
    try {
      const blob = await fetch(`${second.url}/v2/up/test/signed/blobs/${layer}`);
      assert.equal(blob.status, 404, 'a cached blob is not served before its manifest is admitted again');
      await blob.arrayBuffer();
      const byDigest = await fetch(`${second.url}/v2/up/test/signed/manifests/${world.digests.signed}`, {
        headers: { accept: OCI },
      });
      assert.equal(byDigest.status, 403);
      assert.equal(
        ((await byDigest.json()) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason,
        'signature.untrusted_key',
      );
      const byTag = await fetch(`${second.url}/v2/up/test/signed/manifests/1`, { headers: { accept: OCI } });
      assert.equal(byTag.status, 403);
      await byTag.arrayBuffer();
    } finally {
      await second.stop();
    }
  });
});
