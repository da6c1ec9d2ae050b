/**
 * Errors of the shared OCI vocabulary. Every error carries a string-literal `code`
 * that callers branch on; messages are for people and may change.
 */
export type OciErrorCode =
  | 'NAME_INVALID'
  | 'TAG_INVALID'
  | 'DIGEST_INVALID'
  | 'DIGEST_UNSUPPORTED'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'SIZE_EXCEEDED'
  | 'JSON_INVALID'
  | 'JSON_DUPLICATE_KEY'
  | 'JSON_TOO_DEEP'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNSUPPORTED'
  | 'MEDIA_TYPE_MISMATCH';

export class OciError extends Error {
  readonly code: OciErrorCode;
  readonly detail: Record<string, unknown> | undefined;
  constructor(code: OciErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OciError';
    this.code = code;
    this.detail = options?.detail;
  }
}

export type UpstreamErrorCode =
  | 'UPSTREAM_NOT_FOUND'
  | 'UPSTREAM_UNAUTHORIZED'
  | 'UPSTREAM_DENIED'
  | 'UPSTREAM_TOO_MANY_REQUESTS'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_PROTOCOL'
  | 'UPSTREAM_AUTH_REALM_REJECTED'
  | 'UPSTREAM_REDIRECT_REJECTED'
  | 'UPSTREAM_BODY_TOO_LARGE'
  | 'UPSTREAM_DIGEST_MISMATCH'
  | 'UPSTREAM_LENGTH_MISMATCH';

/** The first OCI error a remote registry sent with a failure (its own words). */
export interface RemoteError {
  readonly code: string;
  readonly message: string;
  readonly detail?: Record<string, unknown>;
}

/**
 * A failure talking to a remote registry. `status` is the upstream HTTP status when
 * there was one, `upstream` the registry's host, `remote` the error it sent.
 */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  readonly status: number | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly upstream: string | undefined;
  readonly remote: RemoteError | undefined;
  constructor(
    code: UpstreamErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number; retryAfterSeconds?: number; upstream?: string; remote?: RemoteError },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpstreamError';
    this.code = code;
    this.status = options?.status;
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.upstream = options?.upstream;
    this.remote = options?.remote;
  }
}
