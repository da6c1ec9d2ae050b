import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';
import { AttestationError, pae, signStatement, verificationSummary, verifySummaryEnvelope } from '../../../policies/attestation.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const digest = `sha256:${'a'.repeat(64)}`;
const statement = verificationSummary({
  subjectName: 'reg.example/team/app', subjectDigest: digest, verifierId: 'urn:test', verifierVersion: '0',
  timeVerified: new Date('2026-01-02T03:04:05Z'), resourceUri: `docker://reg.example/team/app@${digest}`,
  policy: { uri: 'policy.yaml', digest: { sha256: 'b'.repeat(64) } }, inputAttestations: [],
});

test('DSSE PAE matches the specification vector', () => {
  assert.equal(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
});

test('a signed summary verifies and yields its claims', () => {
  const v = verifySummaryEnvelope(signStatement(statement, privateKey), publicKey);
  assert.deepEqual(v.subjectDigests, [digest]);
  assert.equal(v.verificationResult, 'PASSED');
  assert.equal(v.timeVerified.toISOString(), '2026-01-02T03:04:05.000Z');
  assert.equal(v.policyDigest, `sha256:${'b'.repeat(64)}`);
});

const code = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return e instanceof AttestationError ? e.code : 'other';
  }
};

test('another key, an altered payload, another predicate type and junk are each refused with a code', () => {
  const env = JSON.parse(signStatement(statement, privateKey).toString()) as { payload: string; payloadType: string; signatures: { sig: string }[] };
  assert.equal(code(() => verifySummaryEnvelope(signStatement(statement, other.privateKey), publicKey)), 'attestation.bad_signature');
  const altered = { ...env, payload: Buffer.from(Buffer.from(env.payload, 'base64').toString().replace('PASSED', 'FAILED')).toString('base64') };
  assert.equal(code(() => verifySummaryEnvelope(Buffer.from(JSON.stringify(altered)), publicKey)), 'attestation.bad_signature');
  const provenance = { ...statement, predicateType: 'https://slsa.dev/provenance/v1' };
  assert.equal(code(() => verifySummaryEnvelope(signStatement(provenance, privateKey), publicKey)), 'attestation.wrong_type');
  assert.equal(code(() => verifySummaryEnvelope(Buffer.from('{"payload":1}'), publicKey)), 'attestation.malformed');
  assert.equal(code(() => verifySummaryEnvelope(Buffer.from(`{"payload":"","payload":""}`), publicKey)), 'attestation.malformed');
  // Signed by the right key over the bare payload instead of the PAE: refused.
  const body = Buffer.from(env.payload, 'base64');
  const bare = { ...env, signatures: [{ sig: sign('sha256', body, privateKey).toString('base64') }] };
  assert.equal(code(() => verifySummaryEnvelope(Buffer.from(JSON.stringify(bare)), publicKey)), 'attestation.bad_signature');
});
