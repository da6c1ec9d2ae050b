import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';
import { run } from '../helpers/peers.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { sharedState } from '../helpers/shared-state.js';
import { startSwift, type TestSwift } from '../helpers/swift.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Two gateways sharing a real PostgreSQL and a real S3-compatible bucket (Swift s3api):
 * skopeo pulls a signed image through one; the other then serves it by digest from the
 * shared state without asking the upstream anything; a denied image leaves nothing in
 * the bucket; every object in the bucket hashes to the digest it is stored under.
 */
describe('gateways share blobs in an S3-compatible bucket', () => {
  let world: SignedWorld;
  let pg: TestPostgres;
  let swift: TestSwift;
  const gateways: TestGateway[] = [];
  const out = tempDir('portcullis-s3-pull-');

  before(async () => {
    [world, pg, swift] = await Promise.all([buildSignedWorld({ accessLog: true }), startPostgres(), startSwift()]);
  });
  after(async () => {
    for (const g of gateways) await g.stop();
    await Promise.all([pg?.stop(), swift?.stop(), world?.stop()]);
    out.cleanup();
  });

  test('an image pulled through one gateway is served by the other from the bucket; a denied one stores nothing', async () => {
    const shared = await sharedState(pg, swift, { prefix: 'portcullis/' });
    const bucket = shared.bucket;
    const start = async () => {
      const gw = await startTestGateway({
        upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
        policy: worldPolicy(world.registry.host),
        files: { 'trusted.pub': readFileSync(world.trusted.pub), ...shared.files },
        extraConfig: shared.extraConfig,
      });
      gateways.push(gw);
      return gw;
    };
    const [a, b] = await Promise.all([start(), start()]);
    const copy = (gw: TestGateway, ref: string, dest: string) =>
      run('skopeo', [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/${ref}`,
        `dir:${join(out.path, dest)}`,
      ]);
    assert.equal((await copy(a, 'test/signed:1', 'via-a')).code, 0);
    const before = world.registry.requests().length;
    assert.equal((await copy(b, `test/signed@${world.digests.signed}`, 'via-b')).code, 0);
    assert.deepEqual(world.registry.requests().slice(before), [], 'b asked the upstream nothing');
    assert.deepEqual(
      readFileSync(join(out.path, 'via-b', 'manifest.json')),
      readFileSync(join(out.path, 'via-a', 'manifest.json')),
    );

    const denied = await fetch(`${b.url}/v2/up/test/unsigned/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(denied.status, 403);
    await denied.arrayBuffer();

    const c = swift.client();
    const listed = await c.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (listed.Contents ?? []).map((o) => o.Key as string);
    assert.ok(keys.includes(`portcullis/blobs/sha256/${world.digests.signed.slice(7)}`));
    assert.ok(
      !keys.includes(`portcullis/blobs/sha256/${world.digests.unsigned.slice(7)}`),
      'nothing of a denied image',
    );
    for (const key of keys) {
      assert.match(key, /^portcullis\/blobs\/sha256\/[0-9a-f]{64}$/);
      const body = await (
        await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      ).Body?.transformToByteArray();
      assert.equal(
        createHash('sha256')
          .update(body ?? new Uint8Array())
          .digest('hex'),
        key.slice(-64),
        key,
      );
    }
    c.destroy();
    for (const gw of [a, b])
      assert.ok(!JSON.stringify(gw.logs).includes(swift.secretAccessKey), 'the secret key is never logged');
  });

  test('with store.redirect, a stored blob is a 307 to a pre-signed URL; a blob not stored yet is filled and served here', async () => {
    const shared = await sharedState(pg, swift);
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub), ...shared.files },
      extraConfig: `${shared.extraConfig}\n  redirect: { expiresSeconds: 60 }`,
    });
    gateways.push(gw);
    const m = await fetch(`${gw.url}/v2/up/test/signed/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    const layer = ((await m.json()) as { layers: { digest: string }[] }).layers[0]?.digest as string;
    const cold = await fetch(`${gw.url}/v2/up/test/signed/blobs/${layer}`, { redirect: 'manual' });
    assert.equal(cold.status, 200, 'not in the bucket yet: filled, verified and served by the gateway');
    const bytes = Buffer.from(await cold.arrayBuffer());
    assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer);
    await waitFor(async () => gw.running.gateway.blobs.fillsInFlight === 0, 'the fill to commit');
    const warm = await fetch(`${gw.url}/v2/up/test/signed/blobs/${layer}`, { redirect: 'manual' });
    assert.equal(warm.status, 307);
    await warm.arrayBuffer();
    const location = warm.headers.get('location') ?? '';
    assert.ok(location.startsWith(`${swift.endpoint}/`), location);
    assert.match(location, /X-Amz-Signature=/);
    const direct = await fetch(location);
    assert.equal(direct.status, 200);
    assert.deepEqual(Buffer.from(await direct.arrayBuffer()), bytes);
    const unknown = await fetch(`${gw.url}/v2/up/test/signed/blobs/sha256:${'0'.repeat(64)}`, { redirect: 'manual' });
    assert.equal(unknown.status, 404, 'no redirect for what no admitted image references');
    await unknown.arrayBuffer();
    const copy = await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${gw.host}/up/test/signed:1`,
      `dir:${join(out.path, 'redirected')}`,
    ]);
    assert.equal(copy.code, 0, copy.stderr);
  });
});
