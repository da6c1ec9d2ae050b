import { OciError, UpstreamError, type OciErrorCode, type UpstreamErrorCode } from '../../oci/errors.js';
import { GatewayError, type GatewayErrorCode } from '../errors.js';

/**
 * The one place that knows how errors look over HTTP (distribution-spec §Error
 * codes). The switch is total over every error code the layers below can raise;
 * anything else is 500 UNKNOWN with a generic message (the detail is logged, never
 * sent).
 */
export interface HttpError {
  readonly status: number;
  readonly ociCode: string;
  readonly message: string;
  readonly detail?: Record<string, unknown>;
  readonly retryAfter?: number;
  readonly headers?: Record<string, string>;
  readonly expose: boolean;
}

type Code = OciErrorCode | UpstreamErrorCode | GatewayErrorCode;

function statusFor(code: Code): [number, string] {
  switch (code) {
    case 'NAME_INVALID':
      return [400, 'NAME_INVALID'];
    case 'TAG_INVALID':
      return [400, 'TAG_INVALID'];
    case 'DIGEST_INVALID':
      return [400, 'DIGEST_INVALID'];
    case 'DIGEST_UNSUPPORTED':
      return [400, 'DIGEST_INVALID'];
    case 'NAMESPACE_INVALID':
      return [400, 'NAME_INVALID'];
    case 'PAGINATION_INVALID':
      return [400, 'PAGINATION_NUMBER_INVALID'];
    case 'RANGE_INVALID':
      return [416, 'RANGE_INVALID'];
    case 'NAME_UNKNOWN':
      return [404, 'NAME_UNKNOWN'];
    case 'MANIFEST_UNKNOWN':
      return [404, 'MANIFEST_UNKNOWN'];
    case 'UPSTREAM_NOT_FOUND':
      return [404, 'MANIFEST_UNKNOWN'];
    case 'BLOB_UNKNOWN':
      return [404, 'BLOB_UNKNOWN'];
    case 'POLICY_DENIED':
      return [403, 'DENIED'];
    case 'OPERATION_UNSUPPORTED':
      return [405, 'UNSUPPORTED'];
    // What the upstream sent is unusable: the gateway answers as a bad gateway.
    case 'DIGEST_MISMATCH':
    case 'SIZE_MISMATCH':
    case 'SIZE_EXCEEDED':
    case 'JSON_INVALID':
    case 'JSON_DUPLICATE_KEY':
    case 'JSON_TOO_DEEP':
    case 'MANIFEST_INVALID':
    case 'MEDIA_TYPE_MISMATCH':
    case 'UPSTREAM_DIGEST_MISMATCH':
    case 'UPSTREAM_LENGTH_MISMATCH':
    case 'UPSTREAM_BODY_TOO_LARGE':
    case 'UPSTREAM_PROTOCOL':
      return [502, 'MANIFEST_INVALID'];
    case 'MANIFEST_UNSUPPORTED':
      return [415, 'UNSUPPORTED'];
    case 'UPSTREAM_UNAUTHORIZED':
      return [502, 'UNAUTHORIZED'];
    case 'UPSTREAM_DENIED':
      return [502, 'DENIED'];
    case 'UPSTREAM_AUTH_REALM_REJECTED':
      return [502, 'UNAUTHORIZED'];
    case 'UPSTREAM_REDIRECT_REJECTED':
      return [502, 'UNKNOWN'];
    case 'UPSTREAM_TOO_MANY_REQUESTS':
      return [429, 'TOOMANYREQUESTS'];
    case 'UPSTREAM_UNAVAILABLE':
      return [502, 'UNAVAILABLE'];
    case 'UPSTREAM_TIMEOUT':
      return [504, 'UNAVAILABLE'];
    case 'STORE_CORRUPT':
    case 'STORE_FAILED':
    case 'STORE_SCHEMA_NEWER':
      return [500, 'UNKNOWN'];
    case 'SHUTTING_DOWN':
      return [503, 'UNAVAILABLE'];
    case 'ACCESS_DENIED':
      return [403, 'DENIED'];
  }
}

/** The reason string clients see in `detail.reason`, dotted and lower-case. */
export function reasonFor(code: Code): string {
  return code.toLowerCase().replace(/_/, '.');
}

export function mapError(err: unknown): HttpError {
  if (err instanceof OciError || err instanceof UpstreamError || err instanceof GatewayError) {
    const [status, ociCode] = statusFor(err.code);
    const detail =
      err instanceof GatewayError && err.detail
        ? err.detail
        : {
            reason: reasonFor(err.code),
            ...(err instanceof UpstreamError && err.upstream ? { upstream: err.upstream } : {}),
          };
    const retryAfter = err instanceof UpstreamError ? err.retryAfterSeconds : undefined;
    const size = err instanceof GatewayError && err.code === 'RANGE_INVALID' ? err.detail?.size : undefined;
    return {
      status,
      ociCode,
      message: err.message,
      detail,
      expose: status < 500 || status >= 502,
      ...(retryAfter !== undefined ? { retryAfter } : {}),
      ...(typeof size === 'number' ? { headers: { 'content-range': `bytes */${size}` } } : {}),
    };
  }
  const status = (err as { statusCode?: number })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // fastify's own request errors (bad URL encoding, body limits): no internals in them.
    return { status, ociCode: status === 404 ? 'NAME_UNKNOWN' : 'UNSUPPORTED', message: 'bad request', expose: true };
  }
  return { status: 500, ociCode: 'UNKNOWN', message: 'internal error', expose: false };
}

export function errorBody(e: HttpError): string {
  return JSON.stringify({
    errors: [
      {
        code: e.ociCode,
        message: e.expose ? e.message : 'internal error',
        ...(e.detail && e.expose ? { detail: e.detail } : {}),
      },
    ],
  });
}
