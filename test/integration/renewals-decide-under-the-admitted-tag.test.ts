import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildGpgWorld, type GpgWorld } from '../helpers/gpg-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A renewal decides the image again in the context it was admitted in: under a
 * `matchExact` identity the GPG signature names `repo:tag`, so a renewal decided
 * by digest alone would deny (and withdraw) an image that is still admissible.
 */
describe('a renewal decides the image again under the tag it was admitted for', () => {
  let world: GpgWorld;
  let gw: TestGateway;
  const dir = tempDir('portcullis-renew-tag-');

  before(async () => {
    world = await buildGpgWorld();
    const h = world.registry.host;
    writeFileSync(join(dir.path, 'trusted.gpg'), world.keys['trusted.gpg']);
    const policy = JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          [`${h}/gpg/signed`]: [
            {
              type: 'signedBy',
              keyType: 'GPGKeys',
              keyPath: join(dir.path, 'trusted.gpg'),
              signedIdentity: { type: 'matchExact' },
            },
          ],
        },
      },
    });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${h}", url: "${world.registry.url}", prefix: up, lookaside: "${world.lookaside.url}" }`,
      policy,
      policyFile: 'policy.json',
      extraConfig: 'attestation:\n  renewAfterSeconds: 1',
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    dir.cleanup();
  });

  test('admitted by tag under matchExact, renewed, and still admitted', async () => {
    const m = await fetch(`${gw.url}/v2/up/gpg/signed/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    const digest = world.digests.signed;
    const endpoint = `${gw.url}/v2/up/gpg/signed/_portcullis/attestation/${digest}`;
    const first = await fetch(endpoint);
    assert.equal(first.status, 200);
    const before = Buffer.from(await first.arrayBuffer());
    await sleep(1100);
    const renewed = await fetch(endpoint);
    assert.equal(renewed.status, 200, await renewed.clone().text());
    assert.notDeepEqual(Buffer.from(await renewed.arrayBuffer()), before, 'a new attestation was signed');
    const decisions = gw.logs.filter((l) => l.event === 'decision' && l.digest === digest && l.allowed === true);
    assert.ok(decisions.length >= 2 && decisions.every((d) => d.tag === '1'), JSON.stringify(decisions));
    assert.ok(!gw.logs.some((l) => l.event === 'admission.withdrawn'));
  });
});
