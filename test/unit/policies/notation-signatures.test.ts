import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { digestOf, type Digest } from '../../../oci/digest.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import type { NotationEvidence } from '../../../policies/model.js';
import { payloadFor, signCose, signJws, testCert, type TestCert } from '../../helpers/notation-signer.js';

/**
 * Notary Project signatures: the real JWS and COSE envelopes from notation-go over a real
 * OCI manifest, and envelopes of the test's own under a test CA for the cases those do not
 * cover (chains, validity, expiry, revocation, signing authority, critical attributes).
 */
const FIXTURE = fileURLToPath(new URL('../../../../test/fixtures/notation/notation-go/', import.meta.url));
const manifest = readFileSync(
  `${FIXTURE}oci-layout/blobs/sha256/19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0`,
);
const digest = digestOf(manifest);
const jws = readFileSync(`${FIXTURE}jws_signature.sig`);
const cose = readFileSync(`${FIXTURE}cose_signature.sig`);
const vectorCert = Buffer.from(
  (JSON.parse(jws.toString()) as { header: { x5c: string[] } }).header.x5c[0] as string,
  'base64',
);
const VECTOR_ID = 'x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine';
const JWS = 'application/jose+json';
const COSE = 'application/cose';

const files = new Map<string, Buffer>([['certs/alpine.crt', vectorCert]]);
const compile = (notation: string) =>
  compilePolicy(
    'policy.yaml',
    `version: 1\ndefault: reject\nrules:\n  - scope: reg.test/app\n    require:\n      - notation: ${notation}\n`,
    (p) => {
      const f = files.get(p);
      if (!f) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return f;
    },
  );
const ev = (mediaType: string, envelope: Buffer, source = 'referrer sha256:… layer 0'): NotationEvidence => ({
  source,
  mediaType,
  envelope,
});
const decide = async (notation: string, sigs: NotationEvidence[], d: Digest = digest, m: Buffer = manifest) => {
  const policy = await compile(notation);
  return evaluate(
    policy,
    { name: 'reg.test/app', digest: d },
    { cosign: [], notation: sigs, manifest: m, problems: [] },
  );
};

const VECTOR_POLICY = `{ trustStores: { ca: [certs/alpine.crt] }, trustedIdentities: ["${VECTOR_ID}"] }`;

test('the real notation-go JWS and COSE signatures admit their manifest', async () => {
  for (const [type, env] of [
    [JWS, jws],
    [COSE, cose],
  ] as const) {
    const d = await decide(VECTOR_POLICY, [ev(type, env)]);
    assert.equal(d.allowed, true, JSON.stringify(d.reasons));
    assert.ok(d.attestable);
    assert.ok(
      d.reasons.some((r) => r.code === 'signature.verified' && r.key === 'C=US, ST=WA, L=Seattle, O=Notary, CN=alpine'),
    );
  }
});

test('another identity, another trust store, another digest or altered bytes are refused by code', async () => {
  const other = 'x509.subject: C=US, ST=WA, O=Someone Else';
  assert.equal(
    (await decide(`{ trustStores: { ca: [certs/alpine.crt] }, trustedIdentities: ["${other}"] }`, [ev(JWS, jws)]))
      .denial,
    'signature.signer_untrusted',
  );
  const ca = testCert({ subject: { C: 'US', ST: 'WA', O: 'Other CA', CN: 'root' }, ca: true });
  files.set('certs/other.pem', Buffer.from(ca.pem));
  assert.equal(
    (await decide(`{ trustStores: { ca: [certs/other.pem] }, trustedIdentities: ["*"] }`, [ev(COSE, cose)])).denial,
    'signature.certificate_untrusted',
  );
  const elsewhere = Buffer.from('{"schemaVersion":2}');
  assert.equal(
    (await decide(VECTOR_POLICY, [ev(JWS, jws)], digestOf(elsewhere), elsewhere)).denial,
    'signature.digest_mismatch',
  );
  const tampered = JSON.parse(jws.toString()) as { signature: string };
  tampered.signature = `${tampered.signature.slice(0, 10)}${tampered.signature[10] === 'A' ? 'B' : 'A'}${tampered.signature.slice(11)}`;
  assert.equal(
    (await decide(VECTOR_POLICY, [ev(JWS, Buffer.from(JSON.stringify(tampered)))])).denial,
    'signature.invalid',
  );
  const flipped = Buffer.from(cose);
  flipped[flipped.length - 5] = (flipped[flipped.length - 5] as number) ^ 1;
  assert.equal((await decide(VECTOR_POLICY, [ev(COSE, flipped)])).denial, 'signature.invalid');
  assert.equal(
    (await decide(VECTOR_POLICY, [ev(COSE, jws)])).denial,
    'signature.invalid',
    'a JWS is not a COSE envelope',
  );
  assert.equal((await decide(VECTOR_POLICY, [])).denial, 'signature.missing');
});

// A root, an intermediate and signing certificates of the test's own.
const SUBJECT = { C: 'US', ST: 'WA', L: 'Seattle', O: 'acme-rockets.io', OU: 'Finance', CN: 'SecureBuilder' };
const root = testCert({ subject: { C: 'US', ST: 'WA', O: 'acme-rockets.io', CN: 'Root' }, ca: true });
const intermediate = testCert({
  subject: { C: 'US', ST: 'WA', O: 'acme-rockets.io', CN: 'Intermediate' },
  ca: true,
  issuer: root,
});
const leaf = (o: Partial<Parameters<typeof testCert>[0]> = {}): TestCert =>
  testCert({ subject: SUBJECT, issuer: intermediate, eku: 'codeSigning', ...o });
files.set('certs/acme-root.pem', Buffer.from(root.pem));
const ACME = (extra = '') =>
  `{ trustStores: { ca: [certs/acme-root.pem] }, trustedIdentities: ["x509.subject: C=US, ST=WA, O=acme-rockets.io, OU=Finance"]${extra} }`;
const payload = payloadFor(digest.text, manifest.length);

test('a chain through an intermediate to a trusted root admits, in both envelopes', async () => {
  const good = leaf();
  for (const sign of [signJws, signCose]) {
    const env = sign([good, intermediate, root], payload);
    const d = await decide(ACME(), [ev(sign === signJws ? JWS : COSE, env)]);
    assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  }
  // The chain must be complete and in order.
  assert.equal((await decide(ACME(), [ev(JWS, signJws([good, root], payload))])).denial, 'signature.invalid');
  assert.equal(
    (await decide(ACME(), [ev(JWS, signJws([good, root, intermediate], payload))])).denial,
    'signature.invalid',
  );
});

test('an expired signing certificate fails strict and is only logged under permissive', async () => {
  const old = leaf({ days: [-30, -1] });
  const env = ev(JWS, signJws([old, intermediate, root], payload));
  assert.equal((await decide(ACME(), [env])).denial, 'signature.certificate_expired');
  const permissive = await decide(ACME(', level: permissive'), [env]);
  assert.equal(permissive.allowed, true);
  assert.match(permissive.reasons.find((r) => r.code === 'signature.verified')?.message ?? '', /logged/);
  assert.equal((await decide(ACME(', override: { authenticTimestamp: log }'), [env])).allowed, true);
});

test('a signature past its expiry fails strict unless expiry is overridden to log', async () => {
  const env = ev(COSE, signCose([leaf(), intermediate, root], payload, { expiry: new Date(Date.now() - 60_000) }));
  assert.equal((await decide(ACME(), [env])).denial, 'signature.expired');
  assert.equal((await decide(ACME(', override: { expiry: log }'), [env])).allowed, true);
  const future = ev(
    COSE,
    signCose([leaf(), intermediate, root], payload, { expiry: new Date(Date.now() + 3_600_000) }),
  );
  assert.equal((await decide(ACME(), [future])).allowed, true);
});

test('a certificate naming a CRL cannot be checked offline: strict fails, override revocation: skip admits', async () => {
  const env = ev(JWS, signJws([leaf({ crl: true }), intermediate, root], payload));
  assert.equal((await decide(ACME(), [env])).denial, 'signature.revocation_unavailable');
  assert.equal((await decide(ACME(', override: { revocation: skip }'), [env])).allowed, true);
  assert.equal((await decide(ACME(', level: permissive'), [env])).allowed, true);
});

test('audit enforces integrity only; authenticity failures are logged', async () => {
  const stranger = testCert({ subject: { C: 'US', ST: 'WA', O: 'stranger', CN: 'x' } });
  const env = ev(JWS, signJws([stranger], payload));
  assert.equal((await decide(ACME(), [env])).denial, 'signature.certificate_untrusted');
  assert.equal((await decide(ACME(', level: audit'), [env])).allowed, true, 'authenticity is only logged');
  assert.equal(
    (
      await decide(ACME(', level: audit'), [
        ev(JWS, signJws([leaf(), intermediate, root], payloadFor('sha256:' + '0'.repeat(64), 1))),
      ])
    ).denial,
    'signature.digest_mismatch',
  );
  const other = testCert({
    subject: { C: 'US', ST: 'CA', O: 'other', CN: 'y' },
    issuer: intermediate,
    eku: 'codeSigning',
  });
  const untrusted = ev(JWS, signJws([other, intermediate, root], payload));
  assert.equal((await decide(ACME(), [untrusted])).denial, 'signature.signer_untrusted');
  assert.equal((await decide(ACME(', level: audit'), [untrusted])).allowed, true);
});

test('certificates that break the signing-certificate requirements are refused', async () => {
  for (const bad of [leaf({ eku: 'serverAuth' }), leaf({ criticalKeyUsage: false }), leaf({ ca: true })]) {
    const d = await decide(ACME(), [ev(JWS, signJws([bad, intermediate, root], payload))]);
    assert.equal(d.denial, 'signature.invalid');
  }
  assert.equal(
    (await decide(ACME(), [ev(JWS, signJws([leaf(), intermediate, root], payload, { alg: 'PS384' }))])).denial,
    'signature.invalid',
  );
});

test('unknown critical attributes and verification plugins are refused; unknown informational ones are not', async () => {
  const chain = [leaf(), intermediate, root];
  const crit = { extra: { 'com.example.policy': 'x' }, critical: ['com.example.policy'] };
  const plugin = {
    extra: { 'io.cncf.notary.verificationPlugin': 'com.example.plugin' },
    critical: ['io.cncf.notary.verificationPlugin'],
  };
  for (const sign of [signJws, signCose]) {
    const type = sign === signJws ? JWS : COSE;
    assert.equal((await decide(ACME(), [ev(type, sign(chain, payload, crit))])).denial, 'signature.invalid');
    assert.equal((await decide(ACME(), [ev(type, sign(chain, payload, plugin))])).denial, 'signature.invalid');
    assert.equal(
      (await decide(ACME(), [ev(type, sign(chain, payload, { extra: { 'com.example.note': 'hi' } }))])).allowed,
      true,
    );
  }
});

test('the signingAuthority scheme needs a signingAuthority trust store', async () => {
  const env = ev(JWS, signJws([leaf(), intermediate, root], payload, { scheme: 'notary.x509.signingAuthority' }));
  assert.equal((await decide(ACME(), [env])).denial, 'signature.certificate_untrusted');
  const sa = `{ trustStores: { signingAuthority: [certs/acme-root.pem] }, trustedIdentities: ["*"] }`;
  assert.equal((await decide(sa, [env])).allowed, true);
  assert.equal(
    (await decide(sa, [ev(JWS, signJws([leaf(), intermediate, root], payload))])).denial,
    'signature.certificate_untrusted',
  );
});

test('one signing certificate is one signer for atLeast', async () => {
  const env = signJws([leaf(), intermediate, root], payload);
  const policy = await compilePolicy(
    'policy.yaml',
    `version: 1\ndefault: reject\nrules:\n  - scope: reg.test/app\n    require:\n      - atLeast: 2\n        of:\n          - notation: ${ACME()}\n          - notation: ${ACME()}\n`,
    (p) => files.get(p) as Buffer,
  );
  const d = await evaluate(
    policy,
    { name: 'reg.test/app', digest },
    {
      cosign: [],
      notation: [ev(JWS, env), ev(COSE, signCose([leaf(), intermediate, root], payload), 'referrer b layer 0')],
      manifest,
      problems: [],
    },
  );
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  const one = await evaluate(
    policy,
    { name: 'reg.test/app', digest },
    { cosign: [], notation: [ev(JWS, env), ev(JWS, env, 'referrer c layer 0')], manifest, problems: [] },
  );
  assert.equal(one.allowed, false);
});
