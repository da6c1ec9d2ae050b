import { parseImageReference } from '../oci/reference.js';
import { bundleSignatureCandidates } from './attestations.js';
import { gpgIdentityProblem, intendedRef } from './gpg-identity.js';
import type {
  CosignRequirement,
  Evidence,
  GpgRequirement,
  IdentityMatcher,
  IdentityRule,
  KeylessRule,
  Reason,
  SigstoreSignedTrust,
  TrustedKey,
  ReasonCode,
  Subject,
} from './model.js';
import { parseSimpleSigningPayload, tryVerify, verifyCosignSignature, type CosignClaims } from './verifiers/cosign.js';
import { signingKeyFor } from './verifiers/sigstore-signed.js';
import { verifyKeylessSignature } from './verifiers/cosign-keyless.js';
import type { KeylessIdentity } from './verifiers/fulcio-identity.js';
import { verifyGpgSignature } from './verifiers/gpg.js';

/**
 * One signature requirement (cosign or GPG) checked against the evidence: every
 * signature that verifies with one of its keys and makes the right claims about this
 * digest is a candidate, one per signer (`cosign:<key fingerprint>`,
 * `gpg:<primary key fingerprint>`); everything else is a reason. Which candidate
 * counts, and whether a signer already counted elsewhere, the combinators decide
 * (requirements.ts). Pure.
 */
export interface Candidate {
  readonly signer: string;
  /** The `signature.verified` reason, given when this candidate counts. */
  readonly reason: Reason;
}

export interface LeafCheck {
  /** Why signatures did not count (never `signature.verified`). */
  readonly reasons: Reason[];
  readonly candidates: Candidate[];
  /** The most telling failure, when there is no candidate. */
  readonly primary: ReasonCode;
}

/** Most telling first: a signature for another digest says more than a missing one. */
export const FAILURE_RANK: readonly ReasonCode[] = [
  'attestation.condition_failed',
  'signature.digest_mismatch',
  'signature.identity_mismatch',
  'signature.expired',
  'signature.certificate_expired',
  'signature.revocation_unavailable',
  'signature.sct_invalid',
  'signature.log_entry_invalid',
  'signature.timestamp_invalid',
  'signature.payload_invalid',
  'signature.key_revoked',
  'signature.key_expired',
  'signature.signer_untrusted',
  'signature.untrusted_key',
  'signature.certificate_untrusted',
  'signature.invalid',
  'evidence.unavailable',
  'attestation.missing',
  'signature.missing',
];

export function checkCosign(req: CosignRequirement, index: number, subject: Subject, evidence: Evidence): LeafCheck {
  const reasons: Reason[] = problemReasons(evidence, index);
  const candidates: Candidate[] = [];
  for (const sig of evidence.cosign) {
    const v = verifyCosign(req, sig);
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, requirement: index, evidence: sig.source });
      continue;
    }
    const key = v.source;
    if (v.claims.type !== 'cosign container image signature') {
      reasons.push({
        code: 'signature.payload_invalid',
        message: `payload type is ${JSON.stringify(v.claims.type)}, not "cosign container image signature"`,
        requirement: index,
        evidence: sig.source,
        key,
      });
      continue;
    }
    if (v.claims.digest !== subject.digest.text) {
      reasons.push({
        code: 'signature.digest_mismatch',
        message: `signature is for ${v.claims.digest}, not ${subject.digest.text}`,
        requirement: index,
        evidence: sig.source,
        key,
      });
      continue;
    }
    const identity = req.signedIdentity
      ? gpgIdentityProblem(
          req.signedIdentity,
          v.claims.identity,
          intendedRef(subject.name, subject.tag, subject.digest.text),
        )
      : identityProblem(req.identity, v.claims.identity, subject.name);
    if (identity !== undefined) {
      reasons.push({
        code: 'signature.identity_mismatch',
        message: identity,
        requirement: index,
        evidence: sig.source,
        key,
      });
      continue;
    }
    const signer = v.signer;
    if (candidates.some((c) => c.signer === signer)) continue;
    candidates.push({
      signer,
      reason: {
        code: 'signature.verified',
        message: v.label,
        requirement: index,
        evidence: sig.source,
        key,
      },
    });
  }
  const bundles = bundleSignatureCandidates(req, index, subject, evidence, reasons, candidates);
  if (evidence.cosign.length === 0 && bundles === 0) {
    reasons.push({
      code: 'signature.missing',
      message: `no cosign signature found for ${subject.digest.text}`,
      requirement: index,
    });
  }
  return { reasons, candidates, primary: rank(reasons) };
}

/**
 * A key-based or keyless cosign signature, verified and (keyless) its signer matched:
 * who signed (`signer`, the combinators' unit), how to say it, and the payload's claims.
 */
function verifyCosign(
  req: CosignRequirement,
  sig: Evidence['cosign'][number],
):
  | { ok: true; signer: string; source: string; label: string; claims: CosignClaims }
  | { ok: false; code: ReasonCode; message: string } {
  if (req.sigstoreSigned !== undefined) return verifySigstoreSigned(req, req.sigstoreSigned, sig);
  if (req.keyless === undefined) {
    const v = verifyCosignSignature(sig, req.keys);
    if (!v.ok) return v;
    return {
      ok: true,
      signer: `cosign:${v.key.fingerprint}`,
      source: v.key.source,
      label: `cosign signature by ${v.key.source} (sha256:${v.key.fingerprint.slice(0, 16)}…)`,
      claims: v.claims,
    };
  }
  const rule = req.keyless;
  const v = verifyKeylessSignature(sig, rule.trust);
  if (!v.ok) return v;
  const untrusted = signerProblem(rule, v);
  if (untrusted !== undefined) return { ok: false, code: 'signature.signer_untrusted', message: untrusted };
  if (typeof v.claims === 'string') return { ok: false, code: 'signature.payload_invalid', message: v.claims };
  return {
    ok: true,
    signer: `keyless:${v.issuer}\n${v.subject}`,
    source: `${v.subject} (${v.issuer})`,
    label: `keyless cosign signature by ${v.subject}, issuer ${v.issuer}, certificate verified against ${rule.trust.source}`,
    claims: v.claims,
  };
}

/** containers-policy.json `sigstoreSigned` with Rekor keys, Fulcio or PKI, as containers/image verifies it. */
function verifySigstoreSigned(
  req: CosignRequirement,
  trust: SigstoreSignedTrust,
  sig: Evidence['cosign'][number],
):
  | { ok: true; signer: string; source: string; label: string; claims: CosignClaims }
  | { ok: false; code: ReasonCode; message: string } {
  const candidates = signingKeyFor(sig, trust, req.keys);
  const usable = candidates.filter((c) => c.ok);
  if (usable.length === 0) {
    const why = candidates.map((c) => (c.ok ? '' : c.message)).join('; ');
    return {
      ok: false,
      code: trust.fulcio || trust.pki ? 'signature.certificate_untrusted' : 'signature.untrusted_key',
      message: why,
    };
  }
  const signature = Buffer.from(sig.signature, 'base64');
  for (const c of usable) {
    const asKey = { source: c.label, fingerprint: '', algorithm: algorithmOf(c.key), key: c.key } as const;
    if (tryVerify(asKey, sig.payload, signature) !== 'valid') continue;
    const claims = parseSimpleSigningPayload(sig.payload);
    if (typeof claims === 'string') return { ok: false, code: 'signature.payload_invalid', message: claims };
    return { ok: true, signer: c.signer, source: c.label, label: c.label, claims };
  }
  return {
    ok: false,
    code: trust.fulcio || trust.pki ? 'signature.invalid' : 'signature.untrusted_key',
    message:
      trust.fulcio || trust.pki
        ? "the signature does not verify with its certificate's key"
        : 'no trusted key verifies this signature',
  };
}

function algorithmOf(key: import('node:crypto').KeyObject): TrustedKey['algorithm'] {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'rsa') return 'rsa';
  return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'ecdsa-p384' : 'ecdsa-p256';
}

/** Why a verified keyless signer is not the one the rule names (issuer, subject, claims), or undefined. */
export function signerProblem(rule: KeylessRule, v: KeylessIdentity): string | undefined {
  const checks: [string, IdentityMatcher, string | undefined][] = [
    ['OIDC issuer', rule.issuer, v.issuer],
    ['subject', rule.subject, v.subject],
    ...Object.entries(rule.claims ?? {}).map(
      ([name, m]) =>
        [`certificate claim ${name}`, m, v.certificateClaims[name]] as [string, IdentityMatcher, string | undefined],
    ),
  ];
  for (const [what, matcher, value] of checks) {
    if (value === undefined || !matches(matcher, value))
      return `keyless signature by ${v.subject} (issuer ${v.issuer}): the ${what} is ${value === undefined ? 'absent' : JSON.stringify(value)}, not ${matcher.text}`;
  }
  return undefined;
}

function matches(m: IdentityMatcher, value: string): boolean {
  return m.exact !== undefined ? m.exact === value : m.pattern !== undefined && m.pattern.test(value);
}

/** What went wrong gathering the evidence, as reasons of requirement `index` (every requirement reports them). */
export function problemReasons(evidence: Evidence, index: number): Reason[] {
  return evidence.problems.map((p) => ({
    code: 'evidence.unavailable',
    message: p.message,
    requirement: index,
    evidence: p.source,
  }));
}

export function rank(reasons: readonly Reason[]): ReasonCode {
  return FAILURE_RANK.find((code) => reasons.some((r) => r.code === code)) ?? 'signature.missing';
}

/**
 * A GPG simple-signing signature is a candidate when it verifies with one of the
 * requirement's keys, signs exactly this digest, and names an acceptable identity.
 */
export async function checkGpg(
  req: GpgRequirement,
  index: number,
  subject: Subject,
  evidence: Evidence,
  now: Date,
): Promise<LeafCheck> {
  const reasons: Reason[] = problemReasons(evidence, index);
  const candidates: Candidate[] = [];
  const signatures = evidence.gpg ?? [];
  // containers/image gives up on the whole image when a blob is not an OpenPGP message at all; so do we.
  const unrecognized = signatures.filter((s) => !looksLikeOpenPgp(s.blob));
  if (unrecognized.length > 0) {
    for (const s of unrecognized)
      reasons.push({
        code: 'signature.invalid',
        message: `unrecognized signature format (first byte 0x${(s.blob[0] ?? 0).toString(16).padStart(2, '0')}); a lookaside that serves this fails every pull of the image`,
        requirement: index,
        evidence: s.source,
      });
    return { reasons, candidates, primary: 'signature.invalid' };
  }
  const intended = intendedRef(subject.name, subject.tag, subject.digest.text);
  for (const sig of signatures) {
    const v = await verifyGpgSignature(sig, req.keys, now);
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, requirement: index, evidence: sig.source });
      continue;
    }
    const key = `${v.key.source} (${v.key.fingerprint})`;
    if (v.claims.digest !== subject.digest.text) {
      reasons.push({
        code: 'signature.digest_mismatch',
        message: `GPG signature is for ${v.claims.digest}, not ${subject.digest.text}`,
        requirement: index,
        evidence: sig.source,
        key,
      });
      continue;
    }
    const identity = gpgIdentityProblem(req.identity, v.claims.identity, intended);
    if (identity !== undefined) {
      reasons.push({
        code: 'signature.identity_mismatch',
        message: identity,
        requirement: index,
        evidence: sig.source,
        key,
      });
      continue;
    }
    const signer = `gpg:${v.key.fingerprint}`;
    if (candidates.some((c) => c.signer === signer)) continue;
    candidates.push({
      signer,
      reason: {
        code: 'signature.verified',
        message: `GPG signature by ${key}`,
        requirement: index,
        evidence: sig.source,
        key,
      },
    });
  }
  if (signatures.length === 0)
    reasons.push({
      code: 'signature.missing',
      message: `no GPG signature found for ${subject.digest.text}`,
      requirement: index,
    });
  return { reasons, candidates, primary: rank(reasons) };
}

/**
 * The first byte of a binary OpenPGP signed message as containers/image recognises it
 * (internal/signature FromBlob): compressed data, one-pass signature or signature
 * packets, old or new format. ASCII armour (0x2d) is not among them.
 */
function looksLikeOpenPgp(blob: Uint8Array): boolean {
  const b = blob[0];
  if (b === undefined) return false;
  return (
    (b >= 0xa0 && b <= 0xa3) ||
    b === 0xc8 ||
    (b >= 0x90 && b <= 0x92) ||
    b === 0xc4 ||
    (b >= 0x88 && b <= 0x8b) ||
    b === 0xc2
  );
}

/** Undefined when the signed identity is acceptable for `name`, else why not. */
export function identityProblem(rule: IdentityRule, signed: string, name: string): string | undefined {
  if (rule.kind === 'any') return undefined;
  let signedName: string;
  try {
    const ref = parseImageReference(signed);
    signedName = `${ref.host}/${ref.repository}`;
  } catch {
    return `signed identity ${JSON.stringify(signed)} is not a valid image reference`;
  }
  let expected: string;
  if (rule.kind === 'repository') expected = name;
  else if (rule.kind === 'exact') expected = rule.repository;
  else if (name === rule.prefix || name.startsWith(`${rule.prefix}/`))
    expected = rule.signedPrefix + name.slice(rule.prefix.length);
  else expected = name;
  return signedName === expected ? undefined : `signed identity ${signedName} does not match ${expected}`;
}
