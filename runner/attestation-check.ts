import type { KeyObject } from 'node:crypto';
import { AttestationError, verifySummaryEnvelope, type VerifiedSummary } from '../policies/attestation.js';
import { RunnerError } from './errors.js';

/**
 * The check secure-run makes before anything is unpacked or launched, on every run:
 * one of the gateway's envelopes must verify with the pinned key, name exactly this
 * manifest digest as its subject, say PASSED, and be younger than `maxAgeMs`.
 * Pure: the caller supplies the envelopes (fetched, or from the cache when offline)
 * and the time.
 */
export interface AttestationCheck {
  readonly envelopes: readonly Uint8Array[];
  readonly pinnedKey: KeyObject;
  readonly manifestDigest: string;
  readonly now: Date;
  readonly maxAgeMs: number;
  /** `registry/repository` the user asked for: an attestation of the same digest under another name does not count. */
  readonly subjectName: string;
}

const RANK = [
  'ATTESTATION_EXPIRED',
  'ATTESTATION_NOT_PASSED',
  'ATTESTATION_WRONG_SUBJECT',
  'ATTESTATION_INVALID',
] as const;

const CODES = {
  'attestation.malformed': 'ATTESTATION_INVALID',
  'attestation.bad_signature': 'ATTESTATION_INVALID',
  'attestation.wrong_type': 'ATTESTATION_INVALID',
  'attestation.wrong_subject': 'ATTESTATION_WRONG_SUBJECT',
  'attestation.not_passed': 'ATTESTATION_NOT_PASSED',
  'attestation.expired': 'ATTESTATION_EXPIRED',
} as const;

export function checkAttestation(c: AttestationCheck): { summary: VerifiedSummary; index: number } {
  if (c.envelopes.length === 0)
    throw new RunnerError('ATTESTATION_MISSING', `the gateway has no attestation for ${c.manifestDigest}`);
  const failures: RunnerError[] = [];
  for (const [index, bytes] of c.envelopes.entries()) {
    try {
      const summary = verifySummaryEnvelope(bytes, c.pinnedKey, {
        digest: c.manifestDigest,
        now: c.now,
        maxAgeMs: c.maxAgeMs,
        subjectName: c.subjectName,
      });
      return { summary, index };
    } catch (err) {
      if (!(err instanceof AttestationError)) throw err;
      failures.push(new RunnerError(CODES[err.code], `attestation ${index}: ${err.message}`, { cause: err }));
    }
  }
  // Report the failure that says most: a valid signature on a stale or foreign claim
  // is more telling than junk next to it.
  for (const code of RANK) {
    const f = failures.find((e) => e.code === code);
    if (f) throw f;
  }
  throw new RunnerError('ATTESTATION_MISSING', `the gateway has no attestation for ${c.manifestDigest}`);
}
