import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { signStatement, verificationSummary } from '../../../policies/attestation.js';
import { checkAttestation } from '../../../runner/attestation-check.js';
import { RunnerError } from '../../../runner/errors.js';

const gateway = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const now = new Date('2026-06-01T00:00:00Z');
const DAY = 86_400_000;

const envelope = (subject: string, opts: { at?: Date; key?: typeof gateway.privateKey; result?: string } = {}) => {
  const st = verificationSummary({
    subjectName: 'reg.example/app',
    subjectDigest: subject,
    verifierId: 'urn:test',
    verifierVersion: '0',
    timeVerified: opts.at ?? new Date(now.getTime() - DAY),
    resourceUri: `docker://reg.example/app@${subject}`,
    policy: { uri: 'p', digest: { sha256: 'c'.repeat(64) } },
    inputAttestations: [],
  });
  if (opts.result) (st.predicate as Record<string, unknown>).verificationResult = opts.result;
  return signStatement(st, opts.key ?? gateway.privateKey);
};
const check = (envelopes: Buffer[], maxAgeMs = 30 * DAY, subjectName = 'reg.example/app') =>
  checkAttestation({ envelopes, pinnedKey: gateway.publicKey, manifestDigest: A, now, maxAgeMs, subjectName });
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof RunnerError ? e.code : 'other';
  }
  return undefined;
};

test('a fresh attestation by the pinned key for this digest passes', () => {
  assert.equal(check([envelope(A)]).summary.subjectDigests[0], A);
});

const refusals: [string, () => Buffer[], string, number?][] = [
  ['no attestation', () => [], 'ATTESTATION_MISSING'],
  ['an attestation for another digest (replay)', () => [envelope(B)], 'ATTESTATION_WRONG_SUBJECT'],
  ['an attestation signed by another key', () => [envelope(A, { key: stranger.privateKey })], 'ATTESTATION_INVALID'],
  ['an expired attestation', () => [envelope(A, { at: new Date(now.getTime() - 40 * DAY) })], 'ATTESTATION_EXPIRED'],
  ['one from the future', () => [envelope(A, { at: new Date(now.getTime() + DAY) })], 'ATTESTATION_EXPIRED'],
  ['a FAILED summary', () => [envelope(A, { result: 'FAILED' })], 'ATTESTATION_NOT_PASSED'],
  ['junk', () => [Buffer.from('{}')], 'ATTESTATION_INVALID'],
];
for (const [what, make, code] of refusals) {
  test(`${what} is refused with ${code}`, () =>
    assert.equal(
      refusal(() => check(make())),
      code,
    ));
}

test('an attestation of the same digest under another name does not count', () => {
  assert.equal(
    refusal(() => check([envelope(A)], 30 * DAY, 'reg.example/other')),
    'ATTESTATION_WRONG_SUBJECT',
  );
});

test('one good envelope among bad ones is enough; the most telling failure is reported otherwise', () => {
  assert.equal(check([Buffer.from('{}'), envelope(B), envelope(A)]).index, 2);
  assert.equal(
    refusal(() => check([Buffer.from('{}'), envelope(B)])),
    'ATTESTATION_WRONG_SUBJECT',
  );
});
