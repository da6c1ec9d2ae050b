import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { startWorldGateway, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';

const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/**
 * test/multi is an OCI index whose digest alone is signed (cosign sign of the index).
 * Under `index: either` its platform manifests are covered by it; under
 * `signed-platform` each needs its own signature; under `signed-index` they come in
 * only through it.
 */
describe('index rules decide what a signature on an index covers', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  let children: string[] = [];

  const withIndexRule = async (mode: string) => {
    writeFileSync(
      join(gw.dir, 'policy.yaml'),
      worldPolicy(world.registry.host).replace('    require:', `    index: ${mode}\n    require:`),
    );
    await gw.running.reloadPolicy('test');
    assert.match(JSON.stringify(gw.running.policy().rules), new RegExp(mode));
  };
  const get = async (ref: string, accept: string) => {
    const res = await fetch(`${gw.url}/v2/up/test/multi/manifests/${ref}`, { headers: { accept } });
    const body = await res.text();
    return { status: res.status, body };
  };
  const reason = (body: string) =>
    (JSON.parse(body) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    const index = (await (
      await fetch(`${world.registry.url}/v2/test/multi/manifests/1`, { headers: { accept: INDEX } })
    ).json()) as { manifests: { digest: string }[] };
    children = index.manifests.map((m) => m.digest);
    assert.equal(children.length, 2);
  });
  after(() => stop());

  test('signed-platform: the index is admitted as a list, its unsigned platform manifests are not', async () => {
    await withIndexRule('signed-platform');
    assert.equal((await get('1', INDEX)).status, 200);
    const child = await get(children[0] ?? '', MANIFEST);
    assert.equal(child.status, 403);
    assert.equal(reason(child.body), 'signature.missing');
  });

  test('signed-index: platform manifests come in through the signed index that lists them', async () => {
    await withIndexRule('signed-index');
    assert.equal((await get('1', INDEX)).status, 200);
    assert.equal((await get(children[0] ?? '', MANIFEST)).status, 200);
  });

  test('either (the default): covered by the admitted index', async () => {
    await withIndexRule('either');
    assert.equal((await get('1', INDEX)).status, 200);
    assert.equal((await get(children[1] ?? '', MANIFEST)).status, 200);
  });
});
