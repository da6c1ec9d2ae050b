import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest } from '../../../oci/digest.js';
import { evaluate } from '../../../policies/evaluator.js';
import { LoadError } from '../../../policies/errors.js';
import { compilePolicy } from '../../../policies/loader.js';
import * as openpgp from 'openpgp';
import { parseGpgKeyring } from '../../../policies/gpg-keys.js';
import { parsePayload, verifyGpgSignature } from '../../../policies/verifiers/gpg.js';
import { fixture } from '../../helpers/fixtures.js';

const TV2_DIGEST = parseDigest('sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55');
const NAME = 'docker.io/testing/manifest';
const tv2 = () => ({ source: 'tv2', blob: fixture('gpg-tv2/image.signature') });

function policy(identity: string, key = fixture('gpg-tv2/public-key.asc')) {
  return compilePolicy(
    'p.yaml',
    `rules:\n  - scope: docker.io/testing\n    require:\n      - gpg: { keys: [k.gpg]${identity} }\n`,
    () => key,
  );
}

test('the containers/image GPG fixture verifies: its repository-only identity passes matchRepository', async () => {
  const d = await evaluate(
    await policy(', identity: matchRepository'),
    { name: NAME, digest: TV2_DIGEST },
    { cosign: [], gpg: [tv2()], problems: [] },
  );
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  assert.match(
    d.reasons.find((r) => r.code === 'signature.verified')?.key ?? '',
    /08CD26E446E2E95249B7A405E932F44B23E8DD43/,
  );
});

test('the default identity rule (matchRepoDigestOrExact) refuses a signature that names no tag', async () => {
  const d = await evaluate(
    await policy(''),
    { name: NAME, digest: TV2_DIGEST, tag: 'latest' },
    { cosign: [], gpg: [tv2()], problems: [] },
  );
  assert.equal(d.denial, 'signature.identity_mismatch');
});

test('the same signature for another digest, or checked against another key, is refused', async () => {
  const other = parseDigest(`sha256:${'3'.repeat(64)}`);
  const p = await policy(', identity: matchRepository');
  assert.equal(
    (await evaluate(p, { name: NAME, digest: other }, { cosign: [], gpg: [tv2()], problems: [] })).denial,
    'signature.digest_mismatch',
  );
  const none = await evaluate(p, { name: NAME, digest: TV2_DIGEST }, { cosign: [], gpg: [], problems: [] });
  assert.equal(none.denial, 'signature.missing');
});

test('a tampered, armored or empty blob is signature.invalid', async () => {
  const p = await policy(', identity: matchRepository');
  const tampered = Buffer.from(fixture('gpg-tv2/image.signature'));
  tampered[tampered.length - 20] = (tampered[tampered.length - 20] ?? 0) ^ 0xff;
  for (const blob of [tampered, Buffer.from('-----BEGIN PGP MESSAGE-----\n'), Buffer.alloc(0)]) {
    const d = await evaluate(
      p,
      { name: NAME, digest: TV2_DIGEST },
      { cosign: [], gpg: [{ source: 'x', blob }], problems: [] },
    );
    assert.equal(d.denial, 'signature.invalid');
  }
});

test('payloads are parsed strictly: exact field sets, the type, integer timestamps, no duplicate keys', () => {
  const good = fixture('gpg-tv2/payload.json').toString();
  assert.deepEqual(parsePayload(Buffer.from(good)), { digest: TV2_DIGEST.text, identity: 'testing/manifest' });
  const bad = [
    good.replace('"optional":', '"extra":1,"optional":'),
    good.replace('atomic container signature', 'cosign container image signature'),
    good.replace('"type"', '"kind":1,"type"'),
    good.replace('1458239713', '1458239713.5'),
    good.replace('"creator":"atomic "', '"creator":1'),
    good.replace('{"docker-reference"', '{"docker-reference":"x","docker-reference"'),
    '[]',
  ];
  for (const text of bad) assert.equal(typeof parsePayload(Buffer.from(text)), 'string', text);
});

test('keyrings that are not OpenPGP public keys are load errors at the line that names them', async () => {
  for (const key of [
    Buffer.from('not a key'),
    Buffer.from('-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n'),
  ]) {
    await assert.rejects(
      policy('', key),
      (e: unknown) => e instanceof LoadError && e.diagnostics.length === 1 && e.diagnostics[0]?.line === 4,
    );
  }
});

test('GPG identity rules in the policy are checked when loaded', async () => {
  const bad = [
    ', identity: matchSomething',
    ', identity: { exactReference: "docker.io/x/y" }',
    ', identity: { exactRepository: "docker.io/x/y:1" }',
    ', identity: { remapIdentity: { prefix: "docker.io/x:1", signedPrefix: "q.io/y" } }',
  ];
  for (const identity of bad) await assert.rejects(policy(identity), LoadError, identity);
  await policy(', identity: { exactReference: "docker.io/testing/manifest:1" }');
  await policy(
    ', identity: { remapIdentity: { prefix: "mirror.example:5000/testing", signedPrefix: "docker.io/testing" } }',
  );
});

test('a signature that inflates into a huge payload is refused quickly, without holding it in memory', async () => {
  const keys = await parseGpgKeyring(fixture('gpg-hostile/k.gpg'), 'k.gpg');
  assert.ok(Array.isArray(keys));
  const started = Date.now();
  const r = await verifyGpgSignature({ source: 'bomb', blob: fixture('gpg-hostile/bomb.sig') }, keys, new Date());
  assert.equal(r.ok, false);
  assert.equal(r.ok ? undefined : r.code, 'signature.invalid');
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
});

test('a subkey signature whose one-pass header names the primary key is still a subkey signature', async () => {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name: 'p' }],
    subkeys: [{ sign: true }],
    format: 'object',
  });
  const keys = await parseGpgKeyring(publicKey.write(), 'k.gpg');
  assert.ok(Array.isArray(keys));
  const payload = Buffer.from(fixture('gpg-tv2/payload.json'));
  const signed = await openpgp.sign({
    message: await openpgp.createMessage({ binary: payload }),
    signingKeys: privateKey,
    format: 'object',
  });
  // Edit the one-pass header (the typings do not expose its issuer field).
  for (const p of signed.packets)
    if (p instanceof openpgp.OnePassSignaturePacket)
      (p as unknown as { issuerKeyID: openpgp.KeyID }).issuerKeyID = privateKey.getKeyID();
  const r = await verifyGpgSignature({ source: 'forged', blob: signed.write() as Uint8Array }, keys, new Date());
  assert.equal(r.ok ? undefined : r.code, 'signature.untrusted_key');
});

test('a signature whose creation time is ahead of this clock is accepted, as podman accepts it', async () => {
  const { gpgExport, gpgHome, gpgKey, gpgSign, simpleSigningPayload } = await import('../../helpers/gpg.js');
  const { tempDir } = await import('../../helpers/tmp.js');
  const dir = tempDir();
  try {
    const home = gpgHome(dir.path);
    const fpr = await gpgKey(home, 'Clock Ahead', { faked: '20240101T000000' });
    const ring = await parseGpgKeyring(await gpgExport(home, fpr), 'k.gpg');
    assert.ok(Array.isArray(ring));
    const digest = `sha256:${'5'.repeat(64)}`;
    const payload = simpleSigningPayload(digest, 'docker.io/testing/manifest');
    const future = await gpgSign(home, fpr, payload, '20300101T000000');
    const now = new Date('2026-12-03T00:00:00Z');
    const v = await verifyGpgSignature({ source: 'future', blob: future }, ring, now);
    assert.equal(v.ok, true, v.ok ? '' : v.message);
    // Made before the key existed: refused, as GnuPG refuses it (a time conflict).
    const past = await gpgSign(home, fpr, payload, '20230101T000000', ['--ignore-time-conflict']);
    const old = await verifyGpgSignature({ source: 'past', blob: past }, ring, now);
    assert.equal(old.ok, false);
    if (!old.ok) assert.equal(old.code, 'signature.invalid');
  } finally {
    dir.cleanup();
  }
});
