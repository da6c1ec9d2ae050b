import type { ReasonCode } from '../model.js';

/**
 * Which part of a Sigstore verification failed, as a reason code of its own: the
 * certificate had expired (or was not yet valid) at the verified signing time, its SCTs
 * do not verify against the trusted CT logs, the transparency log entry does not verify
 * or is not this signature's (or is missing its proof), a timestamp does not verify, the
 * bundle lacks a field it must have; anything else is a certificate the trusted root does
 * not vouch for.
 *
 * @sigstore/verify (pinned) reports these by its error codes, and SCT and validity
 * failures of the certificate by their messages under CERTIFICATE_ERROR; the unit tests
 * pin each mapping so that an upgrade that changes them is noticed.
 */
export function sigstoreFailureCode(err: unknown): ReasonCode {
  const e = err as { code?: unknown; message?: unknown; cause?: { message?: unknown } } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  const cause = typeof e?.cause?.message === 'string' ? e.cause.message : '';
  // @sigstore/bundle refusing the bundle's shape names the fields it lacks.
  const fields = (err as { fields?: unknown } | undefined)?.fields;
  if (Array.isArray(fields))
    return fields.some((f) => typeof f === 'string' && f.includes('tlogEntries'))
      ? 'signature.log_entry_invalid'
      : 'signature.invalid';
  if (code.startsWith('TLOG_')) return 'signature.log_entry_invalid';
  if (code === 'TIMESTAMP_ERROR') return 'signature.timestamp_invalid';
  if (code === 'CERTIFICATE_ERROR') {
    if (/\bSCTs?\b/.test(message)) return 'signature.sct_invalid';
    if (/not valid or expired at the specified date/.test(`${message}\n${cause}`))
      return 'signature.certificate_expired';
  }
  return 'signature.certificate_untrusted';
}

/** The message for a failed Sigstore verification: what the library said, and its cause. */
export function sigstoreFailureMessage(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: { message?: unknown } } | undefined;
  const code = typeof e?.code === 'string' ? ` (${e.code})` : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const cause = typeof e?.cause?.message === 'string' && e.cause.message !== message ? `: ${e.cause.message}` : '';
  const fields = (err as { fields?: unknown } | undefined)?.fields;
  const missing = Array.isArray(fields) ? ` (${fields.slice(0, 8).map(String).join(', ')})` : '';
  return `${code}: ${message}${cause}${missing}`;
}
