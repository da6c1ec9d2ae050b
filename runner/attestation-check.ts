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
}

const RANK = ['ATTESTATION_EXPIRED', 'ATTESTATION_NOT_PASSED', 'ATTESTATION_WRONG_SUBJECT', 'ATTESTATION_INVALID'] as const;

export function checkAttestation(c: AttestationCheck): { summary: VerifiedSummary; index: number } {
  if (c.envelopes.length === 0) throw new RunnerError('ATTESTATION_MISSING', `the gateway has no attestation for ${c.manifestDigest}`);
  const failures: RunnerError[] = [];
  for (const [index, bytes] of c.envelopes.entries()) {
    let summary: VerifiedSummary;
    try {
      summary = verifySummaryEnvelope(bytes, c.pinnedKey);
    } catch (err) {
      if (!(err instanceof AttestationError)) throw err;
      failures.push(new RunnerError('ATTESTATION_INVALID', `attestation ${index}: ${err.message}`, { cause: err }));
      continue;
    }
    if (summary.subjectDigests.length !== 1 || summary.subjectDigests[0] !== c.manifestDigest) {
      failures.push(new RunnerError('ATTESTATION_WRONG_SUBJECT', `attestation ${index} is for ${summary.subjectDigests.join(', ') || 'no digest'}, not ${c.manifestDigest}`));
      continue;
    }
    if (summary.verificationResult !== 'PASSED') {
      failures.push(new RunnerError('ATTESTATION_NOT_PASSED', `attestation ${index} says ${summary.verificationResult || 'nothing'}, not PASSED`));
      continue;
    }
    const age = c.now.getTime() - summary.timeVerified.getTime();
    if (age > c.maxAgeMs || age < -5 * 60_000) {
      failures.push(new RunnerError('ATTESTATION_EXPIRED', `attestation ${index} was made ${summary.timeVerified.toISOString()}, outside the allowed age of ${Math.round(c.maxAgeMs / 3_600_000)} h`));
      continue;
    }
    return { summary, index };
  }
  // Report the failure that says most: a valid signature on a stale or foreign claim
  // is more telling than junk next to it.
  for (const code of RANK) {
    const f = failures.find((e) => e.code === code);
    if (f) throw f;
  }
  throw new RunnerError('ATTESTATION_MISSING', `the gateway has no attestation for ${c.manifestDigest}`);
}
