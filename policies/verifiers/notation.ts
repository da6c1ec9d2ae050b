import { constants, createHash, verify, X509Certificate } from 'node:crypto';
import { X509Certificate as Asn1Certificate } from '@sigstore/core';
import { parseStrictJson } from '../../oci/strict-json.js';
import type { NotationAction, NotationEvidence, NotationRequirement, ReasonCode, Subject } from '../model.js';
import { EnvelopeError, readEnvelope, type NotationAlg, type NotationEnvelope } from './notation-envelope.js';
import { TimestampError, verifyTimestampToken, type VerifiedTimestamp } from './timestamp-token.js';
import { certificateSubject } from './x509-names.js';

/**
 * Verifies one Notary Project signature as the trust-store and trust-policy
 * specification does, in its order: integrity (envelope, certificate requirements,
 * signature, payload naming this exact manifest) is always enforced; authenticity
 * (the chain reaches a certificate of the trust stores, the signing certificate's
 * subject is a trusted identity), expiry, the authentic timestamp and revocation
 * are enforced or logged as the requirement's level says.
 *
 * Revocation: the gateway decides offline. A certificate that names an OCSP responder
 * or a CRL cannot have its status determined, which the specification counts as a
 * failure ("revocation unavailable") — so under `strict` such a chain fails unless
 * the policy overrides `revocation` to `log` or `skip`. A chain naming neither is not
 * revocable and passes.
 */
export type NotationOutcome =
  | {
      readonly ok: true;
      /** `notation:<sha256 of the signing certificate>`: one signer for the combinators. */
      readonly signer: string;
      /** The signing certificate's subject, for messages and the verification summary. */
      readonly subjectDn: string;
      /** Validations that failed but are only logged at this level. */
      readonly logged: readonly string[];
    }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

const CODE_SIGNING_FORBIDDEN_EKU = new Map([
  ['2.5.29.37.0', 'anyExtendedKeyUsage'],
  ['1.3.6.1.5.5.7.3.1', 'serverAuth'],
  ['1.3.6.1.5.5.7.3.2', 'clientAuth'],
  ['1.3.6.1.5.5.7.3.4', 'emailProtection'],
  ['1.3.6.1.5.5.7.3.8', 'timeStamping'],
]);
const SHA1_SIGNATURES = new Set(['1.2.840.113549.1.1.5', '1.2.840.10045.4.1']);
/** keyUsage bits a signing certificate must not have: keyEncipherment … decipherOnly. */
const LEAF_FORBIDDEN_USAGE = [2, 3, 4, 5, 6, 7, 8];
const OID_KEY_USAGE = '2.5.29.15';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_EKU = '2.5.29.37';
const OID_CRL_DP = '2.5.29.31';
const OID_AIA = '1.3.6.1.5.5.7.1.1';
const OID_OCSP = '1.3.6.1.5.5.7.48.1';

export function verifyNotation(
  req: NotationRequirement,
  sig: NotationEvidence,
  subject: Subject,
  manifest: Uint8Array | undefined,
  now: Date,
): NotationOutcome {
  const fail = (code: ReasonCode, message: string): NotationOutcome => ({ ok: false, code, message });
  // Integrity.
  let env: NotationEnvelope;
  try {
    env = readEnvelope(sig.mediaType, sig.envelope);
  } catch (err) {
    if (err instanceof EnvelopeError) return fail('signature.invalid', err.message);
    throw err;
  }
  let chain: X509Certificate[];
  let parsed: Asn1Certificate[];
  try {
    chain = env.certificates.map((der) => new X509Certificate(der));
    parsed = env.certificates.map((der) => Asn1Certificate.parse(der as Buffer<ArrayBuffer>));
  } catch {
    return fail('signature.invalid', 'the certificate chain in the envelope does not parse');
  }
  let structure: string | undefined;
  try {
    structure = chainProblem(chain, parsed);
  } catch {
    structure = 'a certificate of the chain has a malformed extension';
  }
  if (structure !== undefined) return fail('signature.invalid', structure);
  const leaf = chain[0] as X509Certificate;
  const alg = algorithmFor(leaf);
  if (typeof alg === 'string') return fail('signature.invalid', alg);
  if (alg.name !== env.alg)
    return fail('signature.invalid', `the envelope says ${env.alg} but the signing key calls for ${alg.name}`);
  if (!verifySignature(env, leaf, alg.hash)) return fail('signature.invalid', 'the signature does not verify');
  const target = targetArtifact(env.payload);
  if (typeof target === 'string') return fail('signature.payload_invalid', target);
  if (target.digest !== subject.digest.text)
    return fail('signature.digest_mismatch', `signature is for ${target.digest}, not ${subject.digest.text}`);
  if (manifest !== undefined && target.size !== manifest.length)
    return fail('signature.digest_mismatch', `the signed size ${target.size} is not the manifest's ${manifest.length}`);
  const mediaType = manifestMediaType(manifest);
  if (mediaType !== undefined && target.mediaType !== mediaType)
    return fail(
      'signature.digest_mismatch',
      `the signed media type ${target.mediaType} is not the manifest's ${mediaType}`,
    );

  const logged: string[] = [];
  const check = (
    action: NotationAction,
    code: ReasonCode,
    problem: string | undefined,
  ): NotationOutcome | undefined => {
    if (problem === undefined || action === 'skip') return undefined;
    if (action === 'enforce') return fail(code, problem);
    logged.push(problem);
    return undefined;
  };
  const dn = certificateSubject(parsed[0] as Asn1Certificate);
  const dnText = typeof dn === 'string' ? leaf.subject.replace(/\n/g, ', ') : dn.text;
  const timestamp = timestampProblem(req, env, chain, now);
  const tsaChain = timestamp[2];
  const failed =
    check(req.checks.authenticity, 'signature.certificate_untrusted', trustProblem(req, env, chain)) ??
    check(req.checks.authenticity, 'signature.signer_untrusted', identityProblem(req, dn)) ??
    check(req.checks.expiry, 'signature.expired', expiryProblem(env, now)) ??
    check(req.checks.authenticTimestamp, timestamp[0], timestamp[1]) ??
    check(
      req.checks.revocation,
      'signature.revocation_unavailable',
      safely(() => revocationProblem(chain, parsed)),
    ) ??
    // The timestamp authority's chain is revocable too, and judged by the same offline rule.
    check(
      req.checks.revocation,
      'signature.revocation_unavailable',
      tsaChain &&
        safely(() =>
          revocationProblem(
            tsaChain,
            tsaChain.map((c) => Asn1Certificate.parse(c.raw)),
          ),
        ),
    );
  if (failed) return failed;
  return {
    ok: true,
    signer: `notation:${createHash('sha256').update(leaf.raw).digest('hex')}`,
    subjectDn: dnText,
    logged,
  };
}

function safely(f: () => string | undefined): string | undefined {
  try {
    return f();
  } catch {
    return 'a certificate of the chain has a malformed extension';
  }
}

/** The signature specification's certificate requirements, and that the chain is one ordered path to a root. */
function chainProblem(chain: readonly X509Certificate[], parsed: readonly Asn1Certificate[]): string | undefined {
  const n = chain.length;
  // Names compared as DER (OpenSSL's checkIssued also wants keyCertSign, which a lone self-signed signing certificate lacks).
  const issuedBy = (i: number, j: number) =>
    (parsed[i] as Asn1Certificate).issuer.equals((parsed[j] as Asn1Certificate).subject) &&
    verifies(chain[i] as X509Certificate, chain[j] as X509Certificate);
  if (!issuedBy(n - 1, n - 1)) return 'the certificate chain does not end with a self-signed root certificate';
  for (let i = 0; i < n; i++) {
    const cert = chain[i] as X509Certificate;
    const p = parsed[i] as Asn1Certificate;
    const name = `certificate ${i} (${cert.subject.replace(/\n/g, ', ')})`;
    if (SHA1_SIGNATURES.has(p.signatureAlgorithm)) return `${name} is signed with SHA-1`;
    if (i < n - 1 && !issuedBy(i, i + 1)) return `${name} is not issued by the next certificate of the chain`;
    if (i < n - 1 && p.issuer.equals(p.subject)) return `${name} is self-issued but not the last of the chain`;
    const usage = p.extension(OID_KEY_USAGE);
    if (!usage?.critical) return `${name} has no critical keyUsage extension`;
    const bits = usage.valueObj.subs[0]?.toBitString() ?? [];
    const basic = p.extBasicConstraints;
    if (i === 0) {
      if (basic?.isCA) return `${name} is a CA certificate, not a signing certificate`;
      if (bits[0] !== 1) return `${name} is not for digitalSignature`;
      if (LEAF_FORBIDDEN_USAGE.some((b) => bits[b] === 1))
        return `${name} has key usages a signing certificate must not have`;
      const eku = extendedKeyUsage(p);
      const bad = eku.find((oid) => CODE_SIGNING_FORBIDDEN_EKU.has(oid));
      if (bad !== undefined) return `${name} has extended key usage ${CODE_SIGNING_FORBIDDEN_EKU.get(bad)}`;
      const keyProblem = keySizeProblem(cert);
      if (keyProblem) return `${name}: ${keyProblem}`;
    } else {
      if (!basic || !p.extension(OID_BASIC_CONSTRAINTS)?.critical || !basic.isCA)
        return `${name} lacks critical basicConstraints with cA true`;
      const below = i - 1;
      if (basic.pathLenConstraint !== undefined && BigInt(below) > basic.pathLenConstraint)
        return `${name} allows ${basic.pathLenConstraint} CAs below it, the chain has ${below}`;
      if (bits[5] !== 1) return `${name} is not for keyCertSign`;
    }
  }
  return undefined;
}

function verifies(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function extendedKeyUsage(p: Asn1Certificate): string[] {
  const ext = p.extension(OID_EKU);
  if (!ext) return [];
  return (ext.valueObj.subs[0]?.subs ?? []).map((s) => s.toOID());
}

function keySizeProblem(cert: X509Certificate): string | undefined {
  const d = cert.publicKey.asymmetricKeyDetails;
  if (cert.publicKey.asymmetricKeyType === 'rsa' && (d?.modulusLength ?? 0) < 2048)
    return 'RSA key shorter than 2048 bits';
  return undefined;
}

/** The signature algorithm a signing certificate's key calls for (signature specification, Algorithm Selection). */
function algorithmFor(cert: X509Certificate): { name: NotationAlg; hash: string } | string {
  const key = cert.publicKey;
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d?.modulusLength;
    if (bits === 2048) return { name: 'PS256', hash: 'sha256' };
    if (bits === 3072) return { name: 'PS384', hash: 'sha384' };
    if (bits === 4096) return { name: 'PS512', hash: 'sha512' };
    return `an RSA key of ${bits} bits is not one the specification allows (2048, 3072 or 4096)`;
  }
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve === 'prime256v1') return { name: 'ES256', hash: 'sha256' };
    if (d?.namedCurve === 'secp384r1') return { name: 'ES384', hash: 'sha384' };
    if (d?.namedCurve === 'secp521r1') return { name: 'ES512', hash: 'sha512' };
    return `the EC curve ${d?.namedCurve} is not P-256, P-384 or P-521`;
  }
  return `a ${key.asymmetricKeyType} key is not RSA or EC`;
}

function verifySignature(env: NotationEnvelope, leaf: X509Certificate, hash: string): boolean {
  try {
    if (env.alg.startsWith('PS'))
      return verify(
        hash,
        env.signedBytes,
        { key: leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: createHash(hash).digest().length },
        env.signature,
      );
    return verify(hash, env.signedBytes, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, env.signature);
  } catch {
    return false;
  }
}

/** The payload's target descriptor. */
function targetArtifact(payload: Buffer): { digest: string; size: number; mediaType: string } | string {
  let doc: unknown;
  try {
    doc = parseStrictJson(payload, { maxDepth: 6 });
  } catch (err) {
    return `the payload is not JSON: ${(err as Error).message}`;
  }
  const top = doc as Record<string, unknown> | null;
  if (typeof top !== 'object' || top === null || Object.keys(top).length !== 1 || !('targetArtifact' in top))
    return 'the payload is not {"targetArtifact": …}';
  const t = top['targetArtifact'] as Record<string, unknown> | null;
  if (typeof t !== 'object' || t === null) return 'targetArtifact is not a descriptor';
  const extra = Object.keys(t).find(
    (k) => !['mediaType', 'digest', 'size', 'annotations', 'urls', 'artifactType'].includes(k),
  );
  if (extra !== undefined) return `targetArtifact has an unexpected member ${JSON.stringify(extra)}`;
  const { digest, size, mediaType } = t;
  if (
    typeof digest !== 'string' ||
    typeof mediaType !== 'string' ||
    typeof size !== 'number' ||
    !Number.isSafeInteger(size)
  )
    return 'targetArtifact needs mediaType, digest and size';
  return { digest, size, mediaType };
}

function manifestMediaType(manifest: Uint8Array | undefined): string | undefined {
  if (manifest === undefined) return undefined;
  try {
    const m = parseStrictJson(Buffer.from(manifest), { maxDepth: 64 }) as { mediaType?: unknown };
    return typeof m.mediaType === 'string' ? m.mediaType : undefined;
  } catch {
    return undefined;
  }
}

/** Authenticity, first half: a certificate of the chain is in a trust store of the type the signing scheme needs. */
function trustProblem(
  req: NotationRequirement,
  env: NotationEnvelope,
  chain: readonly X509Certificate[],
): string | undefined {
  const type = env.scheme === 'notary.x509' ? 'ca' : 'signingAuthority';
  const stores = req.trustStores.filter((s) => s.type === type);
  if (stores.length === 0)
    return `the signing scheme ${env.scheme} needs a trust store of type ${type}; the policy has none`;
  for (const store of stores) {
    if (chain.some((c) => store.certificates.some((t) => t.raw.equals(c.raw)))) return undefined;
  }
  return `the certificate chain reaches no certificate of trust store ${stores.map((s) => `${s.type}:${s.name}`).join(', ')}`;
}

/** Authenticity, second half: the signing certificate's subject has every attribute of a trusted identity. */
function identityProblem(req: NotationRequirement, dn: ReturnType<typeof certificateSubject>): string | undefined {
  if (req.identities === undefined) return undefined;
  if (typeof dn === 'string') return `the signing certificate's subject cannot be matched: ${dn}`;
  const trusted = req.identities.some((id) => [...id.attributes].every(([k, v]) => dn.attributes.get(k) === v));
  return trusted ? undefined : `the signing certificate's subject ${dn.text} is not a trusted identity`;
}

function expiryProblem(env: NotationEnvelope, now: Date): string | undefined {
  if (env.expiry === undefined || env.expiry.getTime() > now.getTime()) return undefined;
  return `the signature expired at ${env.expiry.toISOString()}`;
}

/**
 * The authentic timestamp. Under notary.x509.signingAuthority the chain must be valid at
 * the authentic signing time the signature states. Under notary.x509 the time comes from
 * a timestamp countersignature when the policy has a `tsa` trust store: it must be
 * present and verify against that store, and the chain must be valid for the whole of
 * the interval it states, so a signature made while its certificate was valid stays
 * valid after that certificate expires. Without a tsa store, or with `verifyTimestamp:
 * afterCertExpiry` while no certificate of the chain has expired yet, the chain must be
 * valid now, as Notation decides.
 */
function timestampProblem(
  req: NotationRequirement,
  env: NotationEnvelope,
  chain: readonly X509Certificate[],
  now: Date,
): [ReasonCode, string | undefined, (readonly X509Certificate[])?] {
  const expired = 'signature.certificate_expired';
  if (env.scheme === 'notary.x509.signingAuthority')
    return [
      expired,
      validityProblem(
        chain,
        env.authenticSigningTime as Date,
        env.authenticSigningTime as Date,
        'at the authentic signing time',
      ),
    ];
  const tsa = req.trustStores.filter((s) => s.type === 'tsa');
  const anyExpired = chain.some((c) => now.getTime() > Date.parse(c.validTo));
  if (tsa.length === 0 || (req.verifyTimestamp === 'afterCertExpiry' && !anyExpired))
    return [expired, validityProblem(chain, now, now, 'now')];
  const invalid = 'signature.timestamp_invalid';
  const stores = tsa.map((s) => `tsa:${s.name}`).join(', ');
  if (env.timestamp === undefined)
    return [invalid, `the signature has no timestamp countersignature, which trust store ${stores} calls for`];
  let ts: VerifiedTimestamp;
  try {
    ts = verifyTimestampToken(
      env.timestamp,
      env.signature,
      tsa.flatMap((s) => s.certificates),
    );
  } catch (err) {
    if (err instanceof TimestampError) return [invalid, `timestamp countersignature: ${err.message}`];
    throw err;
  }
  return [expired, validityProblem(chain, ts.earliest, ts.latest, `at the time ${ts.authority} vouches for`), ts.chain];
}

/** The first certificate not valid for the whole of [from, to]. */
function validityProblem(chain: readonly X509Certificate[], from: Date, to: Date, what: string): string | undefined {
  const when = from.getTime() === to.getTime() ? from.toISOString() : `${from.toISOString()} to ${to.toISOString()}`;
  for (const c of chain) {
    if (Date.parse(c.validFrom) > from.getTime() || to.getTime() > Date.parse(c.validTo))
      return `certificate ${c.subject.replace(/\n/g, ', ')} is not valid ${what} (${when}; valid ${new Date(c.validFrom).toISOString()} to ${new Date(c.validTo).toISOString()})`;
  }
  return undefined;
}

function revocationProblem(chain: readonly X509Certificate[], parsed: readonly Asn1Certificate[]): string | undefined {
  for (const [i, p] of parsed.entries()) {
    const ocsp = p.extension(OID_AIA)?.valueObj.subs[0]?.subs.some((d) => d.subs[0]?.toOID() === OID_OCSP);
    if (ocsp || p.extension(OID_CRL_DP))
      return `certificate ${(chain[i] as X509Certificate).subject.replace(/\n/g, ', ')} names ${ocsp ? 'an OCSP responder' : 'a CRL'}; the gateway cannot determine revocation offline (override revocation to log or skip to accept it)`;
  }
  return undefined;
}
