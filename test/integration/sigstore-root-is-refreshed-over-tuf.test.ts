import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../../policies/sigstore/public-good-root.js';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { waitFor } from '../helpers/ports.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { attestedEmptyImage, BUNDLE_PREDICATE_TYPE, BUNDLE_SIGNER } from '../helpers/sigstore-images.js';
import { tempDir } from '../helpers/tmp.js';
import { startTufRepo, type TufRepo } from '../helpers/tuf-repo.js';

/**
 * The gateway keeps its Sigstore trusted root fresh from a TUF repository (one of the
 * test's own, on 127.0.0.1): a new trusted_root.json is taken and decides the next
 * pull (an admission under the old root is decided again), the TUF keys can rotate,
 * a target that does not match its signed hash is refused, and with the mirror down
 * the last good root goes on deciding, across a restart too (not the shipped one).
 */
const PUBLIC_GOOD = Buffer.from(JSON.stringify(PUBLIC_GOOD_TRUSTED_ROOT));
/** A root of another Sigstore instance (staging, from the conformance corpus): it does not vouch for public-good certificates. */
const OTHER = readFileSync(
  fileURLToPath(
    new URL('../../../test/fixtures/sigstore/conformance/rekor2-happy-path/trusted_root.json', import.meta.url),
  ),
);

describe('the Sigstore trusted root is refreshed over TUF', () => {
  let registry: TestRegistry;
  let repo: TufRepo;
  let digest: string;
  const gateways: TestGateway[] = [];
  const data = tempDir('portcullis-tuf-data-');

  const gateway = async () => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${registry.host}`,
        '    require:',
        `      - attestation: { predicateType: ${BUNDLE_PREDICATE_TYPE}, ${BUNDLE_SIGNER}, identity: any }`,
        '',
      ].join('\n'),
      files: { 'tuf-root.json': repo.initialRoot },
      dataDir: data.path,
      extraConfig: [
        'sigstore:',
        '  tuf:',
        `    mirror: ${repo.url}`,
        '    root: tuf-root.json',
        '    refreshSeconds: 1',
      ].join('\n'),
    });
    gateways.push(gw);
    return gw;
  };
  const pull = (gw: TestGateway) =>
    run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${gw.host}/up/app/one@${digest}`], {
      allowFail: true,
    });
  const updates = (gw: TestGateway) => gw.logs.filter((l) => l.event === 'sigstore.root_updated').length;
  const lastDecision = (gw: TestGateway) =>
    decisionLogs(gw)
      .filter((l) => l.digest === digest)
      .at(-1);

  before(async () => {
    registry = await startRegistry();
    digest = await attestedEmptyImage(registry, 'app/one');
    repo = await startTufRepo(PUBLIC_GOOD);
  });
  after(async () => {
    for (const gw of gateways) await gw.stop();
    await registry?.stop();
    await repo?.down().catch(() => undefined);
    data.cleanup();
  });

  test('a new root decides the next pull; a rotation of the TUF keys is followed; a bad target is refused', async () => {
    const gw = await gateway();
    assert.equal(updates(gw), 1, 'the first root was taken at start');
    assert.equal((await pull(gw)).code, 0);
    assert.equal(lastDecision(gw)?.allowed, true);

    // The repository publishes a root that does not vouch for the bundle's certificate.
    repo.publish(OTHER);
    await waitFor(async () => updates(gw) === 2, 'the second root to be taken');
    await waitFor(
      async () => gw.logs.some((l) => l.event === 'policy.reloaded' && l.trigger === 'sigstore trusted root updated'),
      'the policy to be compiled with it',
    );
    const denied = await pull(gw);
    assert.notEqual(denied.code, 0, 'the admission under the old root is decided again');
    assert.equal(lastDecision(gw)?.reason, 'signature.certificate_untrusted');

    // New TUF keys for every role (2.root.json signed by the old and the new root key), and the public-good root again.
    repo.rotateKeys();
    repo.publish(PUBLIC_GOOD);
    await waitFor(async () => updates(gw) === 3, 'the root after the key rotation');
    assert.equal((await pull(gw)).code, 0);

    // A mirror serving a target that does not match its signed length and hash: refused, the last good root stays.
    repo.tamperTarget(OTHER);
    repo.publish(Buffer.from(JSON.stringify(PUBLIC_GOOD_TRUSTED_ROOT, null, 1)));
    await waitFor(
      async () => gw.logs.some((l) => l.event === 'sigstore.root_refresh_failed'),
      'the tampered target to be refused',
    );
    assert.equal(updates(gw), 3);
    assert.equal((await pull(gw)).code, 0);
    repo.tamperTarget(undefined);
    // The last root this gateway takes is the other instance's: it denies, where the shipped root would admit.
    repo.publish(OTHER);
    await waitFor(async () => updates(gw) === 4, 'the last root');
    assert.notEqual((await pull(gw)).code, 0);
    await gw.stop();
    gateways.splice(gateways.indexOf(gw), 1);
  });

  test('with the mirror down, the last good root goes on deciding, across a restart', async () => {
    await repo.down();
    const gw = await gateway();
    assert.ok(gw.logs.some((l) => l.event === 'sigstore.root_refresh_failed'));
    assert.equal(updates(gw), 0);
    // The last good root (the other instance's), not the shipped public-good one, decides.
    assert.notEqual((await pull(gw)).code, 0);
    assert.equal(lastDecision(gw)?.reason, 'signature.certificate_untrusted');
  });
});
