import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, startTestGateway, storeSnapshot, type TestGateway } from '../helpers/gateway.js';
import { buildGpgWorld, type GpgCase, type GpgWorld } from '../helpers/gpg-world.js';
import { run } from '../helpers/peers.js';
import { tempDir } from '../helpers/tmp.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

/**
 * GPG simple signing end to end: signatures made by gpg and `skopeo --sign-by`, in a
 * lookaside directory served over HTTP; the gateway fetches signature-1, -2, … and
 * admits only what a trusted primary key signed for this digest and this reference.
 */
describe('GPG simple signing through a lookaside server', () => {
  let world: GpgWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-gpg-out-');

  before(async () => {
    world = await buildGpgWorld();
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up, lookaside: "${world.lookaside.url}" }`,
      policy: [
        'rules:',
        `  - scope: ${world.registry.host}/gpg`,
        '    require:',
        '      - gpg: { keys: [trusted.gpg, expired.gpg, revoked.gpg, subkey.gpg] }',
        `  - scope: ${world.registry.host}/gpg/many`,
        '    require:',
        '      - gpg: { keys: [trusted.asc] }',
        '',
      ].join('\n'),
      files: world.keys,
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    out.cleanup();
  });

  const get = (c: GpgCase, ref = '1') =>
    fetch(`${gw.url}/v2/up/gpg/${c}/manifests/${ref}`, { headers: { accept: OCI_ACCEPT } });

  test('an image signed with skopeo --sign-by by a trusted key is admitted, and skopeo copies it through the gateway', async () => {
    const res = await get('signed');
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('docker-content-digest'), world.digests.signed);
    await res.arrayBuffer();
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${gw.host}/up/gpg/signed:1`,
      `dir:${join(out.path, 'signed')}`,
    ]);
    assert.ok(
      world.lookaside.requests.some((p) =>
        p.endsWith(`/gpg/signed@${world.digests.signed.replace(':', '=')}/signature-1`),
      ),
    );
  });

  test('one valid signature among four bad ones is enough; every bad one is reported with its reason', async () => {
    const res = await get('many');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const logged = decisionLogs(gw).find((l) => l.digest === world.digests.many);
    assert.deepEqual(logged?.reasons, [
      'signature.untrusted_key',
      'signature.invalid',
      'signature.digest_mismatch',
      'signature.payload_invalid',
      'signature.verified',
    ]);
  });

  const denied: [GpgCase, string][] = [
    ['unsigned', 'signature.missing'],
    ['otherkey', 'signature.untrusted_key'],
    ['expired', 'signature.key_expired'],
    ['revoked', 'signature.key_revoked'],
    ['subkey', 'signature.untrusted_key'],
    ['identity', 'signature.identity_mismatch'],
    ['tampered', 'signature.invalid'],
  ];
  for (const [c, reason] of denied) {
    test(`gpg/${c}: 403 DENIED with ${reason}, and nothing is stored`, async () => {
      const before = await storeSnapshot(gw);
      const res = await get(c);
      assert.equal(res.status, 403);
      const body = (await res.json()) as { errors: { code: string; detail: { reason: string } }[] };
      assert.equal(body.errors[0]?.code, 'DENIED');
      assert.equal(body.errors[0]?.detail.reason, reason);
      assert.deepEqual(await storeSnapshot(gw), before);
    });
  }

  test('the same digest under another tag is decided again: the signature names :1, not :2', async () => {
    const again = await get('signed');
    assert.equal(again.status, 200);
    await again.arrayBuffer();
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--preserve-digests',
      `docker://${world.registry.host}/gpg/signed:1`,
      `docker://${world.registry.host}/gpg/signed:2`,
    ]);
    const other = await get('signed', '2');
    assert.equal(other.status, 403);
    assert.equal(
      ((await other.json()) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason,
      'signature.identity_mismatch',
    );
    assert.equal((await get('signed')).status, 200, 'still served under the tag it was signed for');
  });

  test('skopeo fails on a denied image', async () => {
    const copy = await run(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/gpg/otherkey:1`,
        `dir:${join(out.path, 'otherkey')}`,
      ],
      { allowFail: true },
    );
    assert.notEqual(copy.code, 0);
    assert.match(copy.stderr, /denied/i);
  });
});

describe('GPG lookasides named by a registries.d directory, as podman reads them', () => {
  let world: GpgWorld;
  let gw: TestGateway;
  const dir = tempDir('portcullis-regd-');

  before(async () => {
    world = await buildGpgWorld();
    mkdirSync(join(dir.path, 'registries.d'));
    writeFileSync(
      join(dir.path, 'registries.d', 'default.yaml'),
      `docker:\n  ${world.registry.host}/gpg:\n    lookaside: ${world.lookaside.url}\n`,
    );
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: [
        'rules:',
        `  - scope: ${world.registry.host}/gpg`,
        '    require:',
        '      - gpg: { keys: [trusted.gpg] }',
        '',
      ].join('\n'),
      files: world.keys,
      extraConfig: `registriesD: ${JSON.stringify(join(dir.path, 'registries.d'))}`,
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    dir.cleanup();
  });

  test('an upstream without a lookaside of its own uses the one registries.d gives the repository', async () => {
    const ok = await fetch(`${gw.url}/v2/up/gpg/signed/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    assert.equal(ok.status, 200, await ok.clone().text());
    await ok.arrayBuffer();
    const denied = await fetch(`${gw.url}/v2/up/gpg/otherkey/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    assert.equal(denied.status, 403);
    await denied.arrayBuffer();
  });
});
