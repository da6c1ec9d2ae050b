import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OciError, UpstreamError } from '../../../oci/errors.js';
import { GatewayError } from '../../../gateway/errors.js';
import { errorBody, mapError } from '../../../gateway/http/error-mapper.js';

const OCI_CODES = [
  'NAME_INVALID',
  'TAG_INVALID',
  'DIGEST_INVALID',
  'DIGEST_UNSUPPORTED',
  'DIGEST_MISMATCH',
  'SIZE_MISMATCH',
  'SIZE_EXCEEDED',
  'JSON_INVALID',
  'JSON_DUPLICATE_KEY',
  'JSON_TOO_DEEP',
  'MANIFEST_INVALID',
  'MANIFEST_UNSUPPORTED',
  'MEDIA_TYPE_MISMATCH',
] as const;
const UPSTREAM_CODES = [
  'UPSTREAM_NOT_FOUND',
  'UPSTREAM_UNAUTHORIZED',
  'UPSTREAM_DENIED',
  'UPSTREAM_TOO_MANY_REQUESTS',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_PROTOCOL',
  'UPSTREAM_AUTH_REALM_REJECTED',
  'UPSTREAM_REDIRECT_REJECTED',
  'UPSTREAM_BODY_TOO_LARGE',
  'UPSTREAM_DIGEST_MISMATCH',
  'UPSTREAM_LENGTH_MISMATCH',
] as const;
const GATEWAY_CODES = [
  'NAME_UNKNOWN',
  'NAMESPACE_INVALID',
  'MANIFEST_UNKNOWN',
  'BLOB_UNKNOWN',
  'POLICY_DENIED',
  'OPERATION_UNSUPPORTED',
  'RANGE_INVALID',
  'PAGINATION_INVALID',
  'STORE_CORRUPT',
  'STORE_FAILED',
] as const;

test('every error code maps to an HTTP status and an OCI error code', () => {
  const all = [
    ...OCI_CODES.map((c) => new OciError(c, 'x')),
    ...UPSTREAM_CODES.map((c) => new UpstreamError(c, 'x')),
    ...GATEWAY_CODES.map((c) => new GatewayError(c, 'x')),
  ];
  for (const e of all) {
    const m = mapError(e);
    assert.ok(m.status >= 400 && m.status < 600, e.code);
    assert.match(m.ociCode, /^[A-Z_]+$/, e.code);
  }
});

test('unknown errors are 500 UNKNOWN and their message is never sent', () => {
  const m = mapError(new Error('secret database path /var/x'));
  assert.equal(m.status, 500);
  const body = errorBody(m);
  assert.ok(!body.includes('secret'));
  assert.deepEqual(JSON.parse(body), { errors: [{ code: 'UNKNOWN', message: 'internal error' }] });
});

test('denials and refusals carry a dotted machine-readable reason', () => {
  assert.equal(
    mapError(new UpstreamError('UPSTREAM_AUTH_REALM_REJECTED', 'x')).detail?.reason,
    'upstream.auth_realm_rejected',
  );
  assert.equal(mapError(new OciError('DIGEST_INVALID', 'x')).detail?.reason, 'digest.invalid');
});
