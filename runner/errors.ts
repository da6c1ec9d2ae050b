/**
 * Errors of secure-run. The code is what scripts and tests branch on; every refusal
 * to run is one of these, and nothing is unpacked or launched after one.
 */
export type RunnerErrorCode =
  | 'NOT_TRUSTED'
  | 'TRUST_MISMATCH'
  | 'ATTESTATION_MISSING'
  | 'ATTESTATION_INVALID'
  | 'ATTESTATION_WRONG_SUBJECT'
  | 'ATTESTATION_NOT_PASSED'
  | 'ATTESTATION_EXPIRED'
  | 'PLATFORM_UNAVAILABLE'
  | 'IMAGE_UNAVAILABLE'
  | 'IMAGE_INVALID'
  | 'NOT_CACHED';

export class RunnerError extends Error {
  readonly code: RunnerErrorCode;
  constructor(code: RunnerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RunnerError';
    this.code = code;
  }
}
