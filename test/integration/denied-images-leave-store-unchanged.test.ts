import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, storeSnapshot, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

describe('denied images reach neither the client nor the store', () => {
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

  const cases = [
    { repo: 'test/unsigned', key: 'unsigned', reason: 'signature.missing' },
    { repo: 'test/otherkey', key: 'otherkey', reason: 'signature.untrusted_key' },
    { repo: 'test/wrongdigest', key: 'wrongdigest', reason: 'signature.digest_mismatch' },
    { repo: 'test/tampered', key: 'tampered', reason: 'signature.untrusted_key' },
  ] as const;

  for (const c of cases) {
    test(`${c.repo}: 403 DENIED with reason ${c.reason}, nothing stored, skopeo fails`, async () => {
      const before = await storeSnapshot(gw);
      const res = await fetch(`${gw.url}/v2/up/${c.repo}/manifests/1`, { headers: { accept: OCI_ACCEPT } });
      assert.equal(res.status, 403);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      const body = (await res.json()) as {
        errors: { code: string; detail: { reason: string; reasons: { code: string }[] } }[];
      };
      assert.equal(body.errors[0]?.code, 'DENIED');
      assert.equal(body.errors[0]?.detail.reason, c.reason);

      const copy = await run(
        'skopeo',
        [
          '--insecure-policy',
          'copy',
          '--src-tls-verify=false',
          `docker://${gw.host}/up/${c.repo}:1`,
          `dir:${join(out.path, c.key)}`,
        ],
        { allowFail: true },
      );
      assert.notEqual(copy.code, 0);
      assert.match(copy.stderr, /denied/i);

      // The digest itself is denied too, and blobs of a denied image are unknown.
      const byDigest = await fetch(`${gw.url}/v2/up/${c.repo}/manifests/${world.digests[c.key]}`, {
        headers: { accept: OCI_ACCEPT },
      });
      assert.equal(byDigest.status, 403);
      await byDigest.arrayBuffer();
      assert.deepEqual(await storeSnapshot(gw), before);
      const logged = decisionLogs(gw).filter((l) => l.digest === world.digests[c.key]);
      assert.ok(logged.length >= 1);
      assert.ok(logged.every((l) => l.allowed === false && l.reason === c.reason));
    });
  }

  test('blobs of a denied image are not served', async () => {
    const m = await fetch(`${world.registry.url}/v2/test/unsigned/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    const manifest = (await m.json()) as { layers: { digest: string }[] };
    const layer = manifest.layers[0]?.digest;
    const res = await fetch(`${gw.url}/v2/up/test/unsigned/blobs/${layer}`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'BLOB_UNKNOWN');
  });
});
