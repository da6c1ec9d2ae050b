import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildGpgWorld, type GpgCase, type GpgWorld } from '../helpers/gpg-world.js';
import { peer } from '../helpers/peers.js';
import { testPodman, type TestPodman } from '../helpers/podman.js';
import { tempDir } from '../helpers/tmp.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

/**
 * The same containers-policy.json, unchanged, and the same images: podman pulling
 * straight from the registry and the gateway must accept and reject exactly the same
 * ones. Debian's podman has sigstore verification compiled out, so the differential
 * covers signedBy (GPG), insecureAcceptAnything, reject, reference scopes and
 * signedIdentity rules.
 */
describe('a containers-policy.json gives the same decisions in the gateway as in podman', () => {
  let world: GpgWorld;
  let gw: TestGateway;
  let podman: TestPodman;
  const dir = tempDir('portcullis-diff-');
  const cases: readonly GpgCase[] = [
    'signed',
    'otherkey',
    'expired',
    'revoked',
    'subkey',
    'identity',
    'tampered',
    'many',
    'unsigned',
  ];

  before(async () => {
    peer('podman');
    world = await buildGpgWorld();
    const key = (name: keyof GpgWorld['keys']) => {
      const path = join(dir.path, name);
      writeFileSync(path, world.keys[name]);
      return path;
    };
    const h = world.registry.host;
    const policy = JSON.stringify(
      {
        default: [{ type: 'reject' }],
        transports: {
          docker: {
            [`${h}/gpg`]: [
              {
                type: 'signedBy',
                keyType: 'GPGKeys',
                keyPaths: [key('trusted.gpg'), key('expired.gpg'), key('revoked.gpg'), key('subkey.gpg')],
              },
            ],
            [`${h}/gpg/identity`]: [
              {
                type: 'signedBy',
                keyType: 'GPGKeys',
                keyPath: key('trusted.gpg'),
                signedIdentity: {
                  type: 'remapIdentity',
                  prefix: `${h}/gpg/identity`,
                  signedPrefix: `${h}/gpg/somewhere-else`,
                },
              },
            ],
            [`${h}/gpg/unsigned:1`]: [{ type: 'insecureAcceptAnything' }],
            [`${h}/gpg/many`]: [
              {
                type: 'signedBy',
                keyType: 'GPGKeys',
                keyData: world.keys['trusted.gpg'].toString('base64'),
                signedIdentity: { type: 'matchRepository' },
              },
            ],
            [`${h}/gpg/signed`]: [
              { type: 'insecureAcceptAnything' },
              { type: 'signedBy', keyType: 'GPGKeys', keyPath: key('trusted.asc') },
            ],
            [`${h}/gpg/tampered`]: [{ type: 'reject' }],
          },
          'docker-daemon': { '': [{ type: 'insecureAcceptAnything' }] },
        },
      },
      null,
      2,
    );
    writeFileSync(join(dir.path, 'policy.json'), policy);
    podman = testPodman(`[[registry]]\nlocation = "${h}"\ninsecure = true\n`, {
      policy,
      registriesD: `docker:\n  ${h}:\n    lookaside: ${world.lookaside.url}\n`,
    });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${h}", url: "${world.registry.url}", prefix: up, lookaside: "${world.lookaside.url}" }`,
      policy,
      policyFile: 'policy.json',
    });
  });
  after(async () => {
    await gw?.stop();
    podman?.cleanup();
    await world?.stop();
    dir.cleanup();
  });

  test('every fixture image: admitted by the gateway exactly when podman accepts it', async () => {
    const seen: Record<string, { podman: boolean; gateway: boolean }> = {};
    for (const c of cases) {
      const p = await podman.pull(`docker://${world.registry.host}/gpg/${c}:1`);
      const res = await fetch(`${gw.url}/v2/up/gpg/${c}/manifests/1`, { headers: { accept: OCI_ACCEPT } });
      await res.arrayBuffer();
      assert.ok(res.status === 200 || res.status === 403, `${c}: gateway answered ${res.status}`);
      seen[c] = { podman: p.code === 0, gateway: res.status === 200 };
    }
    for (const [c, v] of Object.entries(seen))
      assert.equal(
        v.gateway,
        v.podman,
        `${c}: podman ${v.podman ? 'accepts' : 'rejects'}, the gateway ${v.gateway ? 'admits' : 'denies'}`,
      );
    // The fixtures exercise both outcomes, and the scopes that decide them.
    assert.deepEqual(
      Object.entries(seen)
        .filter(([, v]) => v.podman)
        .map(([c]) => c)
        .sort(),
      ['identity', 'many', 'signed', 'unsigned'],
    );
  });
});
