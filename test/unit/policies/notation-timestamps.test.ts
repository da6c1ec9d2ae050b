import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { digestOf, parseDigest } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import { payloadFor, signCose, signJws, testCert, type TestCert } from '../../helpers/notation-signer.js';
import { timestampToken, type TokenOptions } from '../../helpers/timestamp-authority.js';

/**
 * RFC 3161 timestamp countersignatures on Notation signatures, against `tsa` trust stores:
 * notation-go's real envelopes countersigned by GlobalSign's TSA (one made by a certificate
 * that was valid for ten minutes in 2024), and tokens of the test's own authority for
 * each part of the token that can be wrong.
 */
const VECTORS = fileURLToPath(new URL('../../../../test/fixtures/notation/notation-go/timestamp/', import.meta.url));
const JWS = 'application/jose+json';
const COSE = 'application/cose';
const vector = (name: string) => readFileSync(`${VECTORS}sigEnv/${name}`);
/** The payload all of notation-go's timestamp vectors sign (the manifest itself is not in the vectors). */
const VECTOR_DIGEST = parseDigest('sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda');

/** The signing certificate of an envelope: each vector's is self-signed, so it is its own ca store. */
function leafOf(mediaType: string, envelope: Buffer): Buffer {
  if (mediaType === JWS)
    return Buffer.from(
      (JSON.parse(envelope.toString()) as { header: { x5c: string[] } }).header.x5c[0] as string,
      'base64',
    );
  // COSE: x5chain is the one certificate in the unprotected header; find it by its DER SEQUENCE head.
  const at = envelope.indexOf(Buffer.from([0x30, 0x82]));
  return envelope.subarray(at, at + 4 + envelope.readUInt16BE(at + 2));
}

let files = new Map<string, Buffer>();
function compile(notation: string) {
  return compilePolicy(
    'policy.yaml',
    `version: 1\ndefault: reject\nrules:\n  - scope: reg.test/app\n    require:\n      - notation: ${notation}\n`,
    (p) => {
      const f = files.get(p);
      if (!f) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return f;
    },
  );
}
async function decide(notation: string, mediaType: string, envelope: Buffer, manifest?: Buffer) {
  const policy = await compile(notation);
  return evaluate(
    policy,
    { name: 'reg.test/app', digest: manifest ? digestOf(manifest) : VECTOR_DIGEST },
    { cosign: [], notation: [{ source: 'referrer', mediaType, envelope }], manifest, problems: [] },
  );
}
const outcome = (d: Awaited<ReturnType<typeof decide>>) => (d.allowed ? 'admitted' : d.denial);

const globalsign = readFileSync(`${VECTORS}truststore/tsa-globalsign/globalsignRoot.cer`);
const digicert = readFileSync(`${VECTORS}truststore/tsa-mismatch/DigiCertTSARootSHA384.cer`);
/** GlobalSign's TSA chain names OCSP responders and CRLs, which an offline gateway cannot consult: logged here. */
const REVOCATION_LOGGED = ', override: { revocation: log }';
const policyFor = (leaf: Buffer, tsa: Buffer | undefined, more = REVOCATION_LOGGED) => {
  files = new Map([['certs/leaf.crt', leaf], ...(tsa ? ([['certs/tsa.crt', tsa]] as const) : [])]);
  return `{ trustStores: { ca: [certs/leaf.crt]${tsa ? ', tsa: [certs/tsa.crt]' : ''} }, trustedIdentities: ["*"]${more} }`;
};

test("notation-go's timestamped JWS and COSE envelopes are admitted against GlobalSign's TSA root", async () => {
  for (const [type, name] of [
    [JWS, 'jwsWithTimestamp.sig'],
    [COSE, 'coseWithTimestamp.sig'],
  ] as const) {
    const env = vector(name);
    const d = await decide(policyFor(leafOf(type, env), globalsign), type, env);
    assert.equal(outcome(d), 'admitted', `${name}: ${JSON.stringify(d.reasons)}`);
    assert.equal(
      outcome(await decide(policyFor(leafOf(type, env), globalsign, ''), type, env)),
      'signature.revocation_unavailable',
      "strict: the TSA chain's revocation status cannot be determined offline, as for a signing chain",
    );
  }
});

test('a certificate that expired after its signature was timestamped still verifies; without a tsa store it does not', async () => {
  for (const [type, name] of [
    [JWS, 'jwsExpiredWithTimestamp.sig'],
    [COSE, 'coseExpiredWithTimestamp.sig'],
  ] as const) {
    const env = vector(name);
    const leaf = leafOf(type, env);
    assert.equal(outcome(await decide(policyFor(leaf, globalsign), type, env)), 'admitted', name);
    assert.equal(
      outcome(
        await decide(policyFor(leaf, globalsign, `${REVOCATION_LOGGED}, verifyTimestamp: afterCertExpiry`), type, env),
      ),
      'admitted',
      `${name}: the chain has expired, so afterCertExpiry verifies the timestamp too`,
    );
    assert.equal(outcome(await decide(policyFor(leaf, undefined), type, env)), 'signature.certificate_expired', name);
  }
});

test("a timestamp outside the signing certificate's validity is refused, as notation-go refuses it", async () => {
  for (const [type, name] of [
    [JWS, 'timestampBeforeNotBefore.sig'],
    [COSE, 'timestampAfterNotAfter.sig'],
  ] as const) {
    const env = vector(name);
    assert.equal(
      outcome(await decide(policyFor(leafOf(type, env), globalsign), type, env)),
      'signature.certificate_expired',
      name,
    );
  }
});

test('with a tsa store a signature needs a countersignature that verifies against it', async () => {
  const bare = vector('withoutTimestamp.sig');
  const leaf = leafOf(JWS, bare);
  assert.equal(outcome(await decide(policyFor(leaf, globalsign), JWS, bare)), 'signature.timestamp_invalid');
  assert.equal(
    outcome(
      await decide(policyFor(leaf, globalsign, `${REVOCATION_LOGGED}, verifyTimestamp: afterCertExpiry`), JWS, bare),
    ),
    'admitted',
    'afterCertExpiry: an unexpired chain is checked against the current time instead',
  );
  const permissive = await decide(policyFor(leaf, globalsign, ', level: permissive'), JWS, bare);
  assert.equal(outcome(permissive), 'admitted', 'permissive only logs the authentic timestamp');
  const env = vector('jwsWithTimestamp.sig');
  assert.equal(
    outcome(await decide(policyFor(leafOf(JWS, env), digicert), JWS, env)),
    'signature.timestamp_invalid',
    "a TSA root that is not the token's",
  );
  // notation-go's broken countersignatures, put where the timestamp goes (the unprotected header is not signed).
  for (const token of [
    'TimeStampToken.p7s', // a good token, but over other bytes
    'TimeStampTokenWithInvalidTSTInfo.p7s',
    'TimeStampTokenWithInvalideContentType.p7s',
    'TimeStampTokenWithoutCertificate.p7s',
  ]) {
    const o = JSON.parse(bare.toString()) as { header: Record<string, string> };
    o.header['io.cncf.notary.timestampSignature'] = readFileSync(`${VECTORS}countersignature/${token}`).toString(
      'base64',
    );
    const d = await decide(policyFor(leaf, globalsign), JWS, Buffer.from(JSON.stringify(o)));
    assert.equal(outcome(d), 'signature.timestamp_invalid', token);
  }
});

// The test's own PKI: a signing certificate that expired five days ago, a TSA under its own root.
const DAY = 86_400_000;
const subject = (cn: string) => ({ C: 'US', ST: 'WA', O: 'Portcullis Test', CN: cn });
const caRoot = testCert({ subject: subject('code root'), ca: true, days: [-60, 60] });
const expiredSigner = testCert({ subject: subject('builder'), issuer: caRoot, days: [-10, -5], eku: 'codeSigning' });
const tsaRoot = testCert({ subject: subject('tsa root'), ca: true, days: [-60, 60] });
const tsaCa = testCert({ subject: subject('tsa intermediate'), issuer: tsaRoot, ca: true, days: [-60, 60] });
const tsa = testCert({ subject: subject('tsa'), issuer: tsaRoot, days: [-30, 30], eku: 'timeStamping' });
const manifest = Buffer.from(
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}',
);
const payload = payloadFor(digestOf(manifest).text, manifest.length);

async function ownCase(
  authority: TestCert,
  token: TokenOptions,
  format: 'jws' | 'cose' = 'jws',
  signer = expiredSigner,
) {
  files = new Map([
    ['certs/ca.pem', Buffer.from(caRoot.pem)],
    ['certs/tsa.pem', Buffer.from(tsaRoot.pem)],
  ]);
  const sign = format === 'jws' ? signJws : signCose;
  const env = sign([signer, caRoot], payload, { countersign: (sig) => timestampToken(authority, sig, token) });
  const d = await decide(
    '{ trustStores: { ca: [certs/ca.pem], tsa: [certs/tsa.pem] }, trustedIdentities: ["*"] }',
    format === 'jws' ? JWS : COSE,
    env,
    manifest,
  );
  return outcome(d);
}
const daysAgo = (n: number) => new Date(Date.now() - n * DAY);

test('a timestamp inside the validity of an expired certificate admits it, in JWS and COSE', async () => {
  assert.equal(await ownCase(tsa, { at: daysAgo(7) }), 'admitted');
  assert.equal(await ownCase(tsa, { at: daysAgo(7) }, 'cose'), 'admitted');
  assert.equal(await ownCase(tsa, { at: daysAgo(7), accuracyMs: null }), 'admitted', 'no stated accuracy');
  assert.equal(await ownCase(tsa, { at: daysAgo(3) }), 'signature.certificate_expired', 'stamped after expiry');
  assert.equal(await ownCase(tsa, { at: daysAgo(11) }), 'signature.certificate_expired', 'stamped before validity');
  const notAfter = expiredSigner.forgeCert.validity.notAfter.getTime();
  assert.equal(
    await ownCase(tsa, { at: new Date(notAfter - 500), accuracyMs: 2000 }),
    'signature.certificate_expired',
    'the whole interval the accuracy allows must lie inside the validity',
  );
});

test('every part of a countersignature that is wrong refuses the signature by the timestamp code', async () => {
  const at = daysAgo(7);
  const staleTsa = testCert({ subject: subject('stale tsa'), issuer: tsaRoot, days: [-5, 30], eku: 'timeStamping' });
  const codeSigningTsa = testCert({ subject: subject('cs tsa'), issuer: tsaRoot, days: [-30, 30], eku: 'codeSigning' });
  const softTsa = testCert({
    subject: subject('soft tsa'),
    issuer: tsaRoot,
    days: [-30, 30],
    eku: 'timeStamping',
    ekuCritical: false,
  });
  const strangerRoot = testCert({ subject: subject('stranger'), ca: true, days: [-60, 60] });
  const strangerTsa = testCert({
    subject: subject('stranger tsa'),
    issuer: strangerRoot,
    days: [-30, 30],
    eku: 'timeStamping',
  });
  const cases: [string, TestCert, TokenOptions][] = [
    ['the TSA certificate was not valid at the stated time', staleTsa, { at }],
    ['a TSA certificate without the timeStamping usage', codeSigningTsa, { at }],
    ['a timeStamping usage that is not critical', softTsa, { at }],
    ['a TSA of another root', strangerTsa, { at }],
    ['no ESS signing-certificate attribute', tsa, { at, ess: 'none' }],
    ['an ESS attribute naming another certificate', tsa, { at, ess: 'other' }],
    ['an altered TSA signature', tsa, { at, badSignature: true }],
    ['the signer certificate left out', tsa, { at, withoutSigner: true }],
    ['a SHA-1 message imprint', tsa, { at, imprintHash: 'sha1' }],
  ];
  for (const [what, authority, o] of cases)
    assert.equal(await ownCase(authority, o), 'signature.timestamp_invalid', what);
});

test('the TSA chain is held to the rules of a certificate chain: CA flags, usages and path length', async () => {
  const at = daysAgo(7);
  const tsaLeaf = (issuer: TestCert, o: Partial<Parameters<typeof testCert>[0]> = {}) =>
    testCert({ subject: subject(`tsa ${Math.random()}`), issuer, days: [-30, 30], eku: 'timeStamping', ...o });
  const noSubCa = testCert({
    subject: subject('pathlen 0 CA'),
    issuer: tsaRoot,
    ca: true,
    days: [-60, 60],
    pathLen: 0,
  });
  const underIt = testCert({ subject: subject('below pathlen 0'), issuer: noSubCa, ca: true, days: [-60, 60] });
  const codeSigningCa = testCert({
    subject: subject('code-signing CA'),
    issuer: tsaRoot,
    ca: true,
    days: [-60, 60],
    eku: 'codeSigning',
    ekuCritical: false,
  });
  const cases: [string, TestCert, TestCert[]][] = [
    ['a CA beyond its issuer path length', tsaLeaf(underIt), [underIt, noSubCa]],
    ['an intermediate restricted to code signing', tsaLeaf(codeSigningCa), [codeSigningCa]],
    ['a timestamping certificate that is a CA', tsaLeaf(tsaRoot, { ca: true }), []],
    ['a timestamping certificate for keyEncipherment only', tsaLeaf(tsaRoot, { usage: 'keyEncipherment' }), []],
  ];
  for (const [what, authority, extra] of cases)
    assert.equal(await ownCase(authority, { at, extra }), 'signature.timestamp_invalid', what);
  assert.equal(await ownCase(tsaLeaf(noSubCa), { at, extra: [noSubCa] }), 'admitted', 'within the path length');
});

test('a token whose accuracy spans more than a day, or whose time is no calendar time, is refused', async () => {
  const at = daysAgo(7);
  assert.equal(await ownCase(tsa, { at, accuracyMs: 86_400_001 }), 'signature.timestamp_invalid');
  assert.equal(await ownCase(tsa, { at, accuracyMs: 86_400_000 }), 'admitted', 'a day is allowed');
  assert.equal(await ownCase(tsa, { at, genTimeText: '20261301000000Z' }), 'signature.timestamp_invalid', 'month 13');
});

test('a TSA certificate chains to the tsa root through intermediates the token carries', async () => {
  const issuedTsa = testCert({ subject: subject('tsa 2'), issuer: tsaCa, days: [-30, 30], eku: 'timeStamping' });
  const at = daysAgo(7);
  assert.equal(await ownCase(issuedTsa, { at, extra: [tsaCa] }), 'admitted');
  assert.equal(await ownCase(issuedTsa, { at }), 'signature.timestamp_invalid', 'the intermediate missing');
});

test('a tsa store must hold self-signed CA certificates: anything else is a load error', async () => {
  files = new Map([
    ['certs/ca.pem', Buffer.from(caRoot.pem)],
    ['certs/leaf.pem', Buffer.from(tsa.pem)],
    ['certs/intermediate.pem', Buffer.from(tsaCa.pem)],
  ]);
  for (const file of ['certs/leaf.pem', 'certs/intermediate.pem'])
    await assert.rejects(
      compile(`{ trustStores: { ca: [certs/ca.pem], tsa: [${file}] }, trustedIdentities: ["*"] }`),
      (err) => err instanceof LoadError && err.code === 'POLICY_INVALID' && err.diagnostics[0]?.line === 6,
      file,
    );
  files.set('certs/tsa.pem', Buffer.from(tsaRoot.pem));
  await compile('{ trustStores: { ca: [certs/ca.pem], tsa: [certs/tsa.pem] }, trustedIdentities: ["*"] }');
});
