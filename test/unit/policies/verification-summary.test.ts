import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';
import {
  AttestationError,
  pae,
  signStatement,
  verificationSummary,
  verifySummaryEnvelope,
} from '../../../policies/attestation.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const digest = `sha256:${'a'.repeat(64)}`;
const statement = verificationSummary({
  subjectName: 'reg.example/team/app',
  subjectDigest: digest,
  verifierId: 'urn:test',
  verifierVersion: '0',
  timeVerified: new Date('2026-01-02T03:04:05Z'),
  resourceUri: `docker://reg.example/team/app@${digest}`,
  policy: { uri: 'policy.yaml', digest: { sha256: 'b'.repeat(64) } },
  inputAttestations: [],
});

const code = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return e instanceof AttestationError ? e.code : 'other';
  }
};

const expect = { digest, now: new Date('2026-01-03T00:00:00Z'), maxAgeMs: 7 * 86_400_000 };

test('the expectation is enforced: another digest, an old or future time, a non-ISO time', () => {
  const env = signStatement(statement, privateKey);
  assert.equal(
    code(() => verifySummaryEnvelope(env, publicKey, { ...expect, digest: `sha256:${'f'.repeat(64)}` })),
    'attestation.wrong_subject',
  );
  assert.equal(
    code(() => verifySummaryEnvelope(env, publicKey, { ...expect, now: new Date('2027-01-01T00:00:00Z') })),
    'attestation.expired',
  );
  assert.equal(
    code(() => verifySummaryEnvelope(env, publicKey, { ...expect, now: new Date('2025-01-01T00:00:00Z') })),
    'attestation.expired',
  );
  const loose = { ...statement, predicate: { ...statement.predicate, timeVerified: 'Jan 2 2026' } };
  assert.equal(
    code(() => verifySummaryEnvelope(signStatement(loose, privateKey), publicKey, expect)),
    'attestation.malformed',
  );
});

test('DSSE PAE matches the specification vector', () => {
  assert.equal(
    pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(),
    'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
  );
});

test('a signed summary verifies and yields its claims', () => {
  const v = verifySummaryEnvelope(signStatement(statement, privateKey), publicKey, expect);
  assert.deepEqual(v.subjectDigests, [digest]);
  assert.equal(v.verificationResult, 'PASSED');
  assert.equal(v.timeVerified.toISOString(), '2026-01-02T03:04:05.000Z');
  assert.equal(v.policyDigest, `sha256:${'b'.repeat(64)}`);
  assert.equal(v.subjectName, 'reg.example/team/app');
  assert.equal(v.verifierId, 'urn:test');
});

test('another key, an altered payload, another predicate type and junk are each refused with a code', () => {
  const env = JSON.parse(signStatement(statement, privateKey).toString()) as {
    payload: string;
    payloadType: string;
    signatures: { sig: string }[];
  };
  assert.equal(
    code(() => verifySummaryEnvelope(signStatement(statement, other.privateKey), publicKey, expect)),
    'attestation.bad_signature',
  );
  const altered = {
    ...env,
    payload: Buffer.from(Buffer.from(env.payload, 'base64').toString().replace('PASSED', 'FAILED')).toString('base64'),
  };
  assert.equal(
    code(() => verifySummaryEnvelope(Buffer.from(JSON.stringify(altered)), publicKey, expect)),
    'attestation.bad_signature',
  );
  const provenance = { ...statement, predicateType: 'https://slsa.dev/provenance/v1' };
  assert.equal(
    code(() => verifySummaryEnvelope(signStatement(provenance, privateKey), publicKey, expect)),
    'attestation.wrong_type',
  );
  assert.equal(
    code(() => verifySummaryEnvelope(Buffer.from('{"payload":1}'), publicKey, expect)),
    'attestation.malformed',
  );
  assert.equal(
    code(() => verifySummaryEnvelope(Buffer.from(`{"payload":"","payload":""}`), publicKey, expect)),
    'attestation.malformed',
  );
  // Signed by the right key over the bare payload instead of the PAE: refused.
  const body = Buffer.from(env.payload, 'base64');
  const bare = { ...env, signatures: [{ sig: sign('sha256', body, privateKey).toString('base64') }] };
  assert.equal(
    code(() => verifySummaryEnvelope(Buffer.from(JSON.stringify(bare)), publicKey, expect)),
    'attestation.bad_signature',
  );
});
