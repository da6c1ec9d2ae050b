import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CORPUS, outcome } from '../../helpers/sigstore-conformance.js';

/**
 * What failed in a Sigstore verification is told by its own reason code, not lumped into
 * `signature.certificate_untrusted`: these conformance cases pin each mapping from
 * @sigstore/verify's errors (a library upgrade that changes them fails here).
 */
const EXPECTED: Record<string, string> = {
  'intoto-expired-certificate_fail': 'signature.certificate_expired',
  'intoto-set-outside-signing-cert-validity_fail': 'signature.certificate_expired',
  'intoto-tsa-timestamp-outside-cert-validity_fail': 'signature.certificate_expired',
  'integrated-time-in-future_fail': 'signature.certificate_expired',
  'invalid-ct-key_fail': 'signature.sct_invalid',
  'intoto-log-entry-mismatch_fail': 'signature.log_entry_invalid',
  'wrong-hashedrekord-entry_fail': 'signature.log_entry_invalid',
  'set-invalid-signature_fail': 'signature.log_entry_invalid',
  'inclusion-proof-corrupted-hash_fail': 'signature.log_entry_invalid',
  'invalid-checkpoint-signature_fail': 'signature.log_entry_invalid',
  'intoto-missing-inclusion-proof_fail': 'signature.log_entry_invalid',
  'rekor2-no-timestamp_fail': 'signature.timestamp_invalid',
  'rekor2-timestamp-payload-mismatch_fail': 'signature.timestamp_invalid',
  'rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail': 'signature.timestamp_invalid',
  'bundle-from-wrong-instance_fail': 'signature.certificate_untrusted',
  'signature-mismatch_fail': 'signature.invalid',
};

test('each kind of Sigstore verification failure has its reason code', () => {
  for (const [name, code] of Object.entries(EXPECTED)) {
    const got = outcome(join(CORPUS, name));
    assert.equal(got.split(':')[0], code, `${name}: ${got}`);
  }
});
