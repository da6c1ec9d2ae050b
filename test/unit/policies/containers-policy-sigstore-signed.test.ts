import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import { digestOf } from '../../../oci/digest.js';
import { compileContainersPolicy } from '../../../policies/containers-policy.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import type { CosignSignatureEvidence } from '../../../policies/model.js';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../../../policies/sigstore/public-good-root.js';
import { cosignEvidence, cosignTestKey } from '../../helpers/signatures.js';

/**
 * containers-policy.json `sigstoreSigned` with `fulcio`, Rekor keys and `pki`, as
 * containers/image verifies them: the real keyless signature from containers/image's
 * fixtures under the public-good Fulcio CA and Rekor key; key-based signatures with a
 * Rekor SET made by a Rekor key of the test's own; X.509 signatures under a test CA.
 */
const FIXTURE = fileURLToPath(
  new URL('../../../../test/fixtures/sigstore/containers-image-fulcio-rekor/', import.meta.url),
);
const manifest = readFileSync(`${FIXTURE}manifest.json`);
const digest = digestOf(manifest);
const layer = JSON.parse(readFileSync(`${FIXTURE}signature-1`).subarray(15).toString('utf8')) as {
  payload: string;
  annotations: Record<string, string>;
};
const real: CosignSignatureEvidence = {
  source: 'tag sha256-….sig layer 0',
  payload: Buffer.from(layer.payload, 'base64'),
  signature: layer.annotations['dev.cosignproject.cosign/signature'] as string,
  certificate: layer.annotations['dev.sigstore.cosign/certificate'],
  rekorBundle: layer.annotations['dev.sigstore.cosign/bundle'],
  chain: layer.annotations['dev.sigstore.cosign/chain'],
};
const NAME = 'reg.example/cosign-signed/fulcio-rekor-1';
const IDENTITY = { type: 'exactRepository', dockerRepository: '192.168.64.2:5000/cosign-signed/fulcio-rekor-1' };

const root = PUBLIC_GOOD_TRUSTED_ROOT as {
  tlogs: { publicKey: { rawBytes: string } }[];
  certificateAuthorities: { certChain: { certificates: { rawBytes: string }[] } }[];
};
const pem = (b64: string, kind: string) =>
  `-----BEGIN ${kind}-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${kind}-----\n`;
const b64 = (text: string) => Buffer.from(text).toString('base64');
const FULCIO_CAS = root.certificateAuthorities
  .flatMap((ca) => ca.certChain.certificates.map((c) => pem(c.rawBytes, 'CERTIFICATE')))
  .join('');
const REKOR_KEY = pem(root.tlogs[0]?.publicKey.rawBytes ?? '', 'PUBLIC KEY');

const compile = (requirement: Record<string, unknown>) =>
  compileContainersPolicy(
    'policy.json',
    JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { 'reg.example': [requirement] } } }),
    () => Buffer.alloc(0),
  );
const decide = async (requirement: Record<string, unknown>, sig: CosignSignatureEvidence, name = NAME, d = digest) =>
  evaluate(await compile(requirement), { name, digest: d, tag: 'latest' }, { cosign: [sig], problems: [] });
const fulcio = (over: Record<string, unknown> = {}) => ({
  type: 'sigstoreSigned',
  fulcio: { caData: b64(FULCIO_CAS), oidcIssuer: 'https://github.com/login/oauth', subjectEmail: 'mitr@redhat.com' },
  rekorPublicKeyData: b64(REKOR_KEY),
  signedIdentity: IDENTITY,
  ...over,
});

test('fulcio with the public-good CA and Rekor key admits the real keyless signature', async () => {
  const d = await decide(fulcio(), real);
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  // Without the chain annotation the CA file's intermediate completes the chain.
  assert.equal((await decide(fulcio(), { ...real, chain: undefined })).allowed, true);
});

test('fulcio: another e-mail, issuer, Rekor key, CA, SET or certificate is refused', async () => {
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
    type: 'spki',
    format: 'pem',
  }) as string;
  const f = fulcio().fulcio;
  const cases: [Record<string, unknown>, CosignSignatureEvidence, string][] = [
    [fulcio({ fulcio: { ...f, subjectEmail: 'someone@example.com' } }), real, 'e-mail'],
    [fulcio({ fulcio: { ...f, oidcIssuer: 'https://accounts.google.com' } }), real, 'issuer'],
    [fulcio({ rekorPublicKeyData: b64(other) }), real, 'Rekor key'],
    [fulcio({ rekorPublicKeyDatas: [b64(other), b64(REKOR_KEY)], rekorPublicKeyData: undefined }), real, 'ok'],
    [fulcio({ fulcio: { ...f, caData: b64(pem(certOf(testCa()).raw, 'CERTIFICATE')) } }), real, 'CA'],
    [fulcio(), { ...real, rekorBundle: undefined }, 'no SET'],
    [fulcio(), { ...real, certificate: undefined }, 'no certificate'],
    [fulcio(), { ...real, rekorBundle: (real.rekorBundle ?? '').replace('"logIndex":', '"logIndex":1') }, 'SET'],
  ];
  for (const [requirement, sig, what] of cases) {
    const d = await decide(requirement, sig);
    if (what === 'ok') assert.equal(d.allowed, true, `${what}: ${JSON.stringify(d.reasons)}`);
    else {
      assert.equal(d.allowed, false, what);
      assert.equal(d.denial, 'signature.certificate_untrusted', `${what}: ${JSON.stringify(d.reasons)}`);
    }
  }
});

/** A Rekor SET over a hashedrekord 0.0.1 entry of `sig` by `publicPem`, signed by `rekor`. */
function rekorSet(rekor: KeyObject, sig: CosignSignatureEvidence, publicPem: string, integratedTime: number): string {
  const body = b64(
    JSON.stringify({
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: { hash: { algorithm: 'sha256', value: createHash('sha256').update(sig.payload).digest('hex') } },
        signature: { content: sig.signature, publicKey: { content: b64(publicPem) } },
      },
    }),
  );
  const payload = {
    body,
    integratedTime,
    logID: 'c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d',
    logIndex: 7,
  };
  const set = sign('sha256', Buffer.from(JSON.stringify(payload)), { key: rekor, dsaEncoding: 'der' });
  return JSON.stringify({ SignedEntryTimestamp: set.toString('base64'), Payload: payload });
}

test('a key with Rekor keys: the signature must also be in the log, for this key, signature and payload', async () => {
  const k = cosignTestKey();
  const rekor = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rekorPem = rekor.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const requirement = {
    type: 'sigstoreSigned',
    keyData: b64(k.pem),
    rekorPublicKeyData: b64(rekorPem),
    signedIdentity: { type: 'matchRepository' },
  };
  const name = 'reg.example/team/app';
  const sig = cosignEvidence(k.privateKey, digest.text, name, 'sig 0');
  const logged = { ...sig, rekorBundle: rekorSet(rekor.privateKey, sig, k.pem, 1_700_000_000) };
  assert.equal((await decide(requirement, logged, name)).allowed, true);
  const unlogged = await decide(requirement, sig, name);
  assert.equal(unlogged.denial, 'signature.untrusted_key');
  const other = cosignTestKey();
  const forOther = { ...sig, rekorBundle: rekorSet(rekor.privateKey, sig, other.pem, 1_700_000_000) };
  assert.equal((await decide(requirement, forOther, name)).allowed, false);
  const byOtherLog = {
    ...sig,
    rekorBundle: rekorSet(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, sig, k.pem, 1),
  };
  assert.equal((await decide(requirement, byOtherLog, name)).allowed, false);
  // Without Rekor keys, the same signature needs no log entry (containers/image).
  const plain = { type: 'sigstoreSigned', keyData: b64(k.pem), signedIdentity: { type: 'matchRepository' } };
  assert.equal((await decide(plain, sig, name)).allowed, true);
});

interface TestCa {
  readonly key: forge.pki.rsa.KeyPair;
  readonly cert: forge.pki.Certificate;
}

function testCa(): TestCa {
  const key = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 86_400_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const attrs = [{ name: 'commonName', value: 'Portcullis test CA' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, critical: true },
  ]);
  cert.sign(key.privateKey, forge.md.sha256.create());
  return { key, cert };
}

function certOf(ca: TestCa): { raw: string } {
  return { raw: forge.util.encode64(forge.asn1.toDer(forge.pki.certificateToAsn1(ca.cert)).getBytes()) };
}

function leafOf(
  ca: TestCa,
  opts: { email?: string; host?: string; eku?: 'codeSigning' | 'serverAuth'; expired?: boolean },
): { pem: string; key: KeyObject } {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '02';
  cert.validity.notBefore = new Date(Date.now() - 86_400_000 * (opts.expired ? 3 : 1));
  cert.validity.notAfter = new Date(Date.now() - (opts.expired ? 86_400_000 : -86_400_000));
  cert.setSubject([{ name: 'commonName', value: 'signer' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [
    ...(opts.email ? [{ type: 1, value: opts.email }] : []),
    ...(opts.host ? [{ type: 2, value: opts.host }] : []),
  ];
  cert.setExtensions([
    { name: 'subjectAltName', altNames },
    { name: 'extKeyUsage', [opts.eku ?? 'codeSigning']: true },
  ]);
  cert.sign(ca.key.privateKey, forge.md.sha256.create());
  return { pem: forge.pki.certificateToPem(cert), key: createPrivateKey(forge.pki.privateKeyToPem(keys.privateKey)) };
}

test('pki: an X.509 signature under the configured roots, for the configured e-mail or host, now', async () => {
  const ca = testCa();
  const name = 'reg.example/team/app';
  const requirement = (over: Record<string, unknown> = {}) => ({
    type: 'sigstoreSigned',
    pki: { caRootsData: b64(forge.pki.certificateToPem(ca.cert)), subjectEmail: 'release@example.com', ...over },
    signedIdentity: { type: 'matchRepository' },
  });
  const signed = (leaf: { pem: string; key: KeyObject }) => ({
    ...cosignEvidence(leaf.key, digest.text, name, 'sig 0'),
    certificate: leaf.pem,
  });
  const good = leafOf(ca, { email: 'release@example.com', host: 'build.example.com' });
  assert.equal((await decide(requirement(), signed(good), name)).allowed, true);
  assert.equal(
    (await decide(requirement({ subjectEmail: undefined, subjectHostname: 'build.example.com' }), signed(good), name))
      .allowed,
    true,
  );
  const refused: [Record<string, unknown>, CosignSignatureEvidence, string][] = [
    [requirement({ subjectEmail: 'other@example.com' }), signed(good), 'e-mail'],
    [requirement({ subjectEmail: undefined, subjectHostname: 'other.example.com' }), signed(good), 'host'],
    [requirement(), signed(leafOf(testCa(), { email: 'release@example.com' })), 'another CA'],
    [requirement(), signed(leafOf(ca, { email: 'release@example.com', expired: true })), 'expired'],
    [requirement(), signed(leafOf(ca, { email: 'release@example.com', eku: 'serverAuth' })), 'not for code signing'],
  ];
  for (const [req, sig, what] of refused) {
    const d = await decide(req, sig, name);
    assert.equal(d.denial, 'signature.certificate_untrusted', `${what}: ${JSON.stringify(d.reasons)}`);
  }
  // The certificate's key must have made the signature.
  const swapped = { ...signed(good), certificate: leafOf(ca, { email: 'release@example.com' }).pem };
  assert.equal((await decide(requirement(), swapped, name)).denial, 'signature.invalid');
});

test('sigstoreSigned combinations containers/image refuses are load errors', async () => {
  const k = b64(cosignTestKey().pem);
  const bad: Record<string, unknown>[] = [
    { type: 'sigstoreSigned', fulcio: fulcio().fulcio },
    { type: 'sigstoreSigned', keyData: k, fulcio: fulcio().fulcio, rekorPublicKeyData: b64(REKOR_KEY) },
    {
      type: 'sigstoreSigned',
      pki: { caRootsData: b64(FULCIO_CAS), subjectEmail: 'a@b' },
      rekorPublicKeyData: b64(REKOR_KEY),
    },
    { type: 'sigstoreSigned', pki: { caRootsData: b64(FULCIO_CAS) } },
    { type: 'sigstoreSigned', keyData: k, rekorPublicKeyData: b64(REKOR_KEY), rekorPublicKeyDatas: [b64(REKOR_KEY)] },
    { ...fulcio(), fulcio: { caData: b64(FULCIO_CAS), oidcIssuer: 'https://i' } },
    { ...fulcio(), rekorPublicKeyData: k.slice(0, 12) },
  ];
  for (const doc of bad)
    await assert.rejects(
      compile(doc),
      (e: unknown) => e instanceof LoadError && e.code === 'POLICY_INVALID',
      JSON.stringify(doc),
    );
});
