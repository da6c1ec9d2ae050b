import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';
import { startWorldGateway, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

/**
 * The policy file is watched (and SIGHUP reloads it): a new policy takes effect at
 * once, also for content already cached; a broken one is reported and the running
 * one kept; warn and audit rules admit what they would deny and say so.
 */
describe('policy changes take effect without a restart', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const policyPath = () => join(gw.dir, 'policy.yaml');
  const get = (repo: string, ref = '1') =>
    fetch(`${gw.url}/v2/up/${repo}/manifests/${ref}`, { headers: { accept: OCI } });
  const until = (what: () => boolean) => waitFor(async () => what(), 'the policy to reload');

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
  });
  after(() => stop());

  test('a revocation written to the policy file denies a cached image and its blobs at once', async () => {
    const first = await get('test/signed');
    assert.equal(first.status, 200);
    const manifest = (await first.json()) as { layers: { digest: string }[] };
    const layer = manifest.layers[0]?.digest ?? '';
    const blob = await fetch(`${gw.url}/v2/up/test/signed/blobs/${layer}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
    const before = gw.running.policy().digest.text;
    writeFileSync(
      policyPath(),
      `revoked:\n  - { digest: ${world.digests.signed}, reason: "pulled for a CVE" }\n${worldPolicy(world.registry.host)}`,
    );
    await until(() => gw.running.policy().digest.text !== before);
    assert.ok(gw.logs.some((l) => l.event === 'policy.reloaded' && l.trigger === 'file change'));
    for (const ref of ['1', world.digests.signed]) {
      const res = await get('test/signed', ref);
      assert.equal(res.status, 403);
      assert.equal(
        ((await res.json()) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason,
        'policy.revoked',
      );
    }
    const again = await fetch(`${gw.url}/v2/up/test/signed/blobs/${layer}`);
    assert.notEqual(again.status, 200, 'the blob of a revoked image is not served either');
    await again.arrayBuffer();
  });

  test('a broken policy is reported with its positions and the running one keeps deciding', async () => {
    const running = gw.running.policy().digest.text;
    writeFileSync(policyPath(), 'rules:\n  - scope: nowhere\n    require: []\n');
    await until(() => gw.logs.some((l) => l.event === 'policy.reload_failed'));
    const failed = gw.logs.find((l) => l.event === 'policy.reload_failed') as { diagnostics: string[] };
    assert.ok(failed.diagnostics.some((d) => /policy\.yaml:3:/.test(d)));
    assert.equal(gw.running.policy().digest.text, running);
    assert.equal((await get('test/signed')).status, 403, 'still revoked');
  });

  test('a key file in another directory is watched too: rotating it reloads the policy', async () => {
    mkdirSync(join(gw.dir, 'keys'), { recursive: true });
    writeFileSync(join(gw.dir, 'keys', 'team.pub'), readFileSync(world.trusted.pub));
    writeFileSync(
      policyPath(),
      worldPolicy(world.registry.host).replace('keys: [trusted.pub]', 'keys: [keys/team.pub]'),
    );
    await gw.running.reloadPolicy('SIGHUP');
    const before = gw.running.policy().digest.text;
    writeFileSync(join(gw.dir, 'keys', 'team.pub'), readFileSync(world.other.pub));
    await until(() => gw.running.policy().digest.text !== before);
    const res = await get('test/signed');
    assert.equal(res.status, 403, 'signed by the old key, which is no longer trusted');
    await res.arrayBuffer();
  });

  test('warn mode (reloaded as on SIGHUP) admits an unsigned image with a warning and attests nothing', async () => {
    writeFileSync(
      policyPath(),
      worldPolicy(world.registry.host).replace('    require:', '    mode: warn\n    require:'),
    );
    await gw.running.reloadPolicy('SIGHUP');
    const res = await get('test/unsigned');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const line = decisionLogs(gw).find((l) => l.digest === world.digests.unsigned && l.mode === 'warn');
    assert.equal(line?.allowed, true);
    assert.equal(line?.verdict, false);
    assert.equal(line?.level, 40, 'logged as a warning');
    const att = await get('test/unsigned', `${world.digests.unsigned.replace(':', '-')}.att`);
    assert.equal(att.status, 404, 'no attestation for what was not verified');
    await att.arrayBuffer();
    // The signed image is back (no longer revoked), verified and attested as before.
    assert.equal((await get('test/signed')).status, 200);
  });

  test('audit mode admits and records what enforce would have decided, at info level', async () => {
    writeFileSync(
      policyPath(),
      worldPolicy(world.registry.host).replace('    require:', '    mode: audit\n    require:'),
    );
    assert.equal(await gw.running.reloadPolicy('SIGHUP'), true);
    const res = await get('test/otherkey');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const line = decisionLogs(gw).find((l) => l.digest === world.digests.otherkey && l.mode === 'audit');
    assert.deepEqual(
      [line?.allowed, line?.verdict, line?.level, line?.reason],
      [true, false, 30, 'signature.untrusted_key'],
    );
    assert.ok(readFileSync(policyPath(), 'utf8').includes('audit'));
  });
});
