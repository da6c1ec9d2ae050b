import type { Decision } from '../policies/model.js';

/** Errors raised by the gateway itself; HTTP meaning is assigned only in http/error-mapper.ts. */
export type GatewayErrorCode =
  | 'NAME_UNKNOWN'
  | 'NAMESPACE_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'BLOB_UNKNOWN'
  | 'POLICY_DENIED'
  | 'OPERATION_UNSUPPORTED'
  | 'RANGE_INVALID'
  | 'PAGINATION_INVALID'
  | 'STORE_CORRUPT'
  | 'STORE_FAILED'
  /** The metadata database was migrated by a newer program: refused rather than guessed at. */
  | 'STORE_SCHEMA_NEWER'
  /** The gateway is stopping: a request still waiting (for another replica's fill) is answered 503. */
  | 'SHUTTING_DOWN'
  /** clientAuth: this user may not pull from this repository (said alike whether it exists or not). */
  | 'ACCESS_DENIED';

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly detail: Record<string, unknown> | undefined;
  constructor(
    code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.detail = options?.detail;
  }
}

/** A policy denial, carrying the decision so the client sees the machine-readable reason. */
export class DeniedError extends GatewayError {
  readonly decision: Decision;
  constructor(decision: Decision, subject: string) {
    const primary = decision.reasons.find((r) => r.code === decision.denial);
    const where = primary?.requirement !== undefined ? `, requirement ${primary.requirement + 1}` : '';
    const evidence = primary?.evidence ? ` [${primary.evidence}]` : '';
    super(
      'POLICY_DENIED',
      `${subject} is denied by policy rule ${decision.rule}${where}: ${primary?.message ?? decision.denial}${evidence}`,
      {
        detail: {
          reason: decision.denial,
          rule: decision.rule,
          policy: decision.policyDigest,
          reasons: decision.reasons.map((r) => ({
            code: r.code,
            message: r.message,
            ...(r.evidence ? { evidence: r.evidence } : {}),
          })),
        },
      },
    );
    this.decision = decision;
  }
}
