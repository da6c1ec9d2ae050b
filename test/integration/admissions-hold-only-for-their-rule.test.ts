import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { startWorldGateway, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';

const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/**
 * An admission holds for the rule that made it: a cached digest asked for under a
 * rule that differs (a containers-policy.json scope for one tag) is decided again,
 * and only an index admitted with verified signatures covers its children — not one
 * admitted in audit mode, whose children then get no attestation either.
 */
describe('admissions hold only for the rule that made them', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const get = async (repo: string, ref: string, accept = MANIFEST) => {
    const res = await fetch(`${gw.url}/v2/up/test/${repo}/manifests/${ref}`, { headers: { accept } });
    const body = await res.text();
    return { status: res.status, body };
  };

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
  });
  after(() => stop());

  test('a digest admitted through a one-tag scope is decided again when asked for by digest', async () => {
    const h = world.registry.host;
    const policy = {
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          [`${h}/test/unsigned:1`]: [{ type: 'insecureAcceptAnything' }],
          [`${h}/test/unsigned`]: [
            {
              type: 'sigstoreSigned',
              keyPath: join(gw.dir, 'trusted.pub'),
              signedIdentity: { type: 'matchRepository' },
            },
          ],
        },
      },
    };
    // The gateway's policy file, now holding a containers-policy.json.
    writeFileSync(join(gw.dir, 'policy.yaml'), JSON.stringify(policy));
    assert.equal(await gw.running.reloadPolicy('test'), true);
    assert.equal((await get('unsigned', '1')).status, 200, 'the tag scope accepts anything');
    const byDigest = await get('unsigned', world.digests.unsigned);
    assert.equal(byDigest.status, 403, 'by digest the repository rule applies, and it needs a signature');
    assert.equal(
      (JSON.parse(byDigest.body) as { errors: { detail: { reason: string; rule: string } }[] }).errors[0]?.detail.rule,
      `${h}/test/unsigned`,
    );
    assert.equal((await get('unsigned', '1')).status, 200, 'and the tag is still served under its own rule');
  });

  test('an index admitted in audit mode covers nothing: its children are decided on their own and not attested', async () => {
    writeFileSync(
      join(gw.dir, 'policy.yaml'),
      worldPolicy(world.registry.host)
        .replace('      - cosign: { keys: [trusted.pub] }', '      - cosign: { keys: [other.pub] }')
        .replace('    require:', '    mode: audit\n    require:'),
    );
    writeFileSync(join(gw.dir, 'other.pub'), readFileSync(world.other.pub));
    assert.equal(await gw.running.reloadPolicy('test'), true);
    const index = await get('multi', '1', INDEX);
    assert.equal(index.status, 200, 'admitted in audit mode');
    const child = (JSON.parse(index.body) as { manifests: { digest: string }[] }).manifests[0]?.digest ?? '';
    assert.equal((await get('multi', child)).status, 200, 'audit admits the child too');
    const line = decisionLogs(gw).find((l) => l.digest === child);
    assert.deepEqual([line?.allowed, line?.verdict], [true, false], 'but not as covered by a verified index');
    assert.equal((await get('multi', `${child.replace(':', '-')}.att`)).status, 404, 'and nothing is attested for it');
  });
});
