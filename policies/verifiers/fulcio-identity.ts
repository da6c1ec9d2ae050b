import { X509Certificate } from 'node:crypto';

/**
 * Who a verified Fulcio certificate says signed: the OIDC issuer, the subject, and
 * Fulcio's extension claims by name. A certificate whose identity could be read two
 * ways is refused.
 */
export interface KeylessIdentity {
  readonly issuer: string;
  readonly subject: string;
  /** Fulcio's extension claims of the certificate, by name (sourceRepositoryURI, buildTrigger, …). */
  readonly certificateClaims: Readonly<Record<string, string>>;
}

type Oids = readonly { oid?: { id: readonly number[] } | undefined; value: Uint8Array }[];

/** The identity of a signer @sigstore/verify returned for the certificate `pem`, or why it is refused. */
export function keylessIdentity(
  signer: { identity?: { subjectAlternativeName?: string; extensions?: { issuer?: string }; oids?: Oids } },
  pem: string,
): KeylessIdentity | string {
  const subject = signer.identity?.subjectAlternativeName;
  const issuer = signer.identity?.extensions?.issuer;
  if (subject === undefined || issuer === undefined) return 'the certificate names no subject or no OIDC issuer';
  const oids = signer.identity?.oids ?? [];
  const ambiguity = identityAmbiguity(pem, oids, subject, issuer);
  if (ambiguity !== undefined) return ambiguity;
  const certificateClaims: Record<string, string> = {};
  for (const ext of oids) {
    const name = ext.oid ? FULCIO_CLAIMS[ext.oid.id.join('.')] : undefined;
    const text = name === undefined ? undefined : utf8StringOf(Buffer.from(ext.value));
    if (name !== undefined && text !== undefined) certificateClaims[name] = text;
  }
  return { issuer, subject, certificateClaims };
}

const PRINTABLE = /^[\x21-\x7e]+$/;

/**
 * A certificate whose identity could be read two ways is refused: one SAN only, the
 * issuer's old and new extensions agreeing, printable ASCII (the library decodes them
 * as ASCII, which would quietly fold other bytes).
 */
function identityAmbiguity(
  pem: string,
  oids: readonly { oid?: { id: readonly number[] } | undefined; value: Uint8Array }[],
  subject: string,
  issuer: string,
): string | undefined {
  if (!PRINTABLE.test(subject) || !PRINTABLE.test(issuer))
    return 'the certificate subject or issuer is not printable ASCII';
  let sans: string[];
  try {
    sans = (new X509Certificate(pem).subjectAltName ?? '').split(', ').filter((s) => s !== '');
  } catch {
    return 'the certificate cannot be read';
  }
  if (sans.length !== 1) return `the certificate names ${sans.length} subjects; a Fulcio certificate names one`;
  const value = (id: string) => oids.find((o) => o.oid?.id.join('.') === id)?.value;
  const v1 = value('1.3.6.1.4.1.57264.1.1');
  const v2 = value('1.3.6.1.4.1.57264.1.8');
  if (v1 !== undefined && v2 !== undefined && Buffer.from(v1).toString('latin1') !== utf8StringOf(Buffer.from(v2)))
    return 'the certificate carries two different OIDC issuers';
  return undefined;
}

/**
 * The Fulcio certificate extensions policies are written on (fulcio docs/oid-info.md),
 * as the GitHub Actions (and other CI) OIDC claims map to them. Values are DER
 * UTF8Strings.
 */
export const FULCIO_CLAIMS: Readonly<Record<string, string>> = {
  '1.3.6.1.4.1.57264.1.9': 'buildSignerURI',
  '1.3.6.1.4.1.57264.1.10': 'buildSignerDigest',
  '1.3.6.1.4.1.57264.1.11': 'runnerEnvironment',
  '1.3.6.1.4.1.57264.1.12': 'sourceRepositoryURI',
  '1.3.6.1.4.1.57264.1.13': 'sourceRepositoryDigest',
  '1.3.6.1.4.1.57264.1.14': 'sourceRepositoryRef',
  '1.3.6.1.4.1.57264.1.15': 'sourceRepositoryIdentifier',
  '1.3.6.1.4.1.57264.1.16': 'sourceRepositoryOwnerURI',
  '1.3.6.1.4.1.57264.1.17': 'sourceRepositoryOwnerIdentifier',
  '1.3.6.1.4.1.57264.1.18': 'buildConfigURI',
  '1.3.6.1.4.1.57264.1.19': 'buildConfigDigest',
  '1.3.6.1.4.1.57264.1.20': 'buildTrigger',
  '1.3.6.1.4.1.57264.1.21': 'runInvocationURI',
  '1.3.6.1.4.1.57264.1.22': 'sourceRepositoryVisibilityAtSigning',
};

/** A DER UTF8String (tag 0x0c, definite length), or undefined. */
function utf8StringOf(der: Buffer): string | undefined {
  if (der.length < 2 || der[0] !== 0x0c) return undefined;
  let len = der[1] as number;
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 2 || der.length < 2 + n) return undefined;
    len = n === 1 ? (der[2] as number) : ((der[2] as number) << 8) | (der[3] as number);
    off = 2 + n;
  }
  return off + len === der.length ? der.subarray(off).toString('utf8') : undefined;
}
