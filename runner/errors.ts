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
  | 'NOT_CACHED'
  | 'OPTION_INVALID'
  | 'IMAGE_DENIED'
  | 'GATEWAY_UNREACHABLE'
  | 'DATA_DIR_UNREACHABLE'
  | 'LAYER_DIGEST_MISMATCH';

export class RunnerError extends Error {
  readonly code: RunnerErrorCode;
  /** The gateway's own reason code, when the gateway refused (`signature.missing`, `policy.revoked`). */
  readonly reason: string | undefined;
  constructor(code: RunnerErrorCode, message: string, options?: { cause?: unknown; reason?: string | undefined }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RunnerError';
    this.code = code;
    this.reason = options?.reason;
  }
}
