import { parseImageReference } from '../oci/reference.js';
import { gpgIdentityProblem, intendedRef } from './gpg-identity.js';
import type { CompiledPolicy, CosignRequirement, Decision, Evidence, GpgRequirement, IdentityRule, Reason, ReasonCode, Requirement, RuleAction, Subject } from './model.js';
import { selectRule } from './scope.js';
import { verifyCosignSignature } from './verifiers/cosign.js';
import { verifyGpgSignature } from './verifiers/gpg.js';

/**
 * The decision for one subject. Pure: no I/O, no logging, and the clock only as
 * `now` is passed in (OpenPGP key and signature expiry). Asynchronous because
 * OpenPGP verification is.
 * Fail closed by construction: a rule with no requirements denies; every
 * requirement must hold (AND); a requirement holds only when a piece of evidence
 * both verifies cryptographically and makes the right claims about this digest.
 *
 * Admitted means the signatures and policy passed for this digest; it does not mean
 * the layers were scanned or that the signer is right to trust.
 */
export async function evaluate(policy: CompiledPolicy, subject: Subject, evidence: Evidence, now: Date = new Date()): Promise<Decision> {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  const ruleName = rule ? (rule.match === 'transport-default' ? 'docker ""' : rule.scope) : 'default';
  const result = await decide(action, subject, evidence, now);
  return { ...result, rule: ruleName, policyDigest: policy.digest.text };
}

/** The signature formats the rule for `name` asks for: the gateway fetches only those. */
export function formatsFor(policy: CompiledPolicy, subject: Subject): Set<Requirement['kind']> {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  return new Set(action.kind === 'require' ? action.requirements.map((r) => r.kind) : []);
}

async function decide(action: RuleAction, subject: Subject, evidence: Evidence, now: Date): Promise<Pick<Decision, 'allowed' | 'reasons' | 'denial'>> {
  switch (action.kind) {
    case 'reject':
      return deny([{ code: 'policy.rejected', message: action.message ?? 'the policy rejects images in this scope' }]);
    case 'accept-anything':
      return { allowed: true, reasons: [{ code: 'policy.accept_anything', message: 'the policy accepts anything in this scope (insecure)' }] };
    case 'require': {
      if (action.requirements.length === 0) return deny([{ code: 'policy.rejected', message: 'the rule has no requirements' }]);
      const reasons: Reason[] = [];
      let failed: ReasonCode | undefined;
      for (const [index, req] of action.requirements.entries()) {
        const r = await checkRequirement(req, index, subject, evidence, now);
        reasons.push(...r.reasons);
        if (!r.held && failed === undefined) failed = r.primary;
      }
      if (failed === undefined) return { allowed: true, reasons };
      if (evidence.coveringIndex !== undefined) {
        // The index that lists this manifest was admitted under this same rule: its
        // signatures cover the children it names (cosign signs an index digest only).
        return { allowed: true, reasons: [{ code: 'signature.covered_by_index', message: `listed in admitted index ${evidence.coveringIndex}` }, ...reasons] };
      }
      return { allowed: false, reasons, denial: failed };
    }
  }
}

function deny(reasons: Reason[]): Pick<Decision, 'allowed' | 'reasons' | 'denial'> {
  return { allowed: false, reasons, denial: reasons[0]?.code ?? 'policy.rejected' };
}

interface RequirementResult {
  readonly held: boolean;
  readonly reasons: Reason[];
  readonly primary: ReasonCode;
}

async function checkRequirement(req: Requirement, index: number, subject: Subject, evidence: Evidence, now: Date): Promise<RequirementResult> {
  return req.kind === 'gpg' ? checkGpg(req, index, subject, evidence, now) : checkCosign(req, index, subject, evidence);
}

/** Most telling first: a signature for another digest says more than a missing one. */
const FAILURE_RANK: readonly ReasonCode[] = [
  'signature.digest_mismatch',
  'signature.identity_mismatch',
  'signature.payload_invalid',
  'signature.key_revoked',
  'signature.key_expired',
  'signature.untrusted_key',
  'signature.invalid',
  'evidence.unavailable',
  'signature.missing',
];

function checkCosign(req: CosignRequirement, index: number, subject: Subject, evidence: Evidence): RequirementResult {
  const reasons: Reason[] = [];
  for (const problem of evidence.problems) {
    reasons.push({ code: 'evidence.unavailable', message: problem.message, requirement: index, evidence: problem.source });
  }
  for (const sig of evidence.cosign) {
    const v = verifyCosignSignature(sig, req.keys);
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, requirement: index, evidence: sig.source });
      continue;
    }
    const key = v.key.source;
    if (v.claims.type !== 'cosign container image signature') {
      reasons.push({ code: 'signature.payload_invalid', message: `payload type is ${JSON.stringify(v.claims.type)}, not "cosign container image signature"`, requirement: index, evidence: sig.source, key });
      continue;
    }
    if (v.claims.digest !== subject.digest.text) {
      reasons.push({ code: 'signature.digest_mismatch', message: `signature is for ${v.claims.digest}, not ${subject.digest.text}`, requirement: index, evidence: sig.source, key });
      continue;
    }
    const identity = req.signedIdentity
      ? gpgIdentityProblem(req.signedIdentity, v.claims.identity, intendedRef(subject.name, subject.tag, subject.digest.text))
      : identityProblem(req.identity, v.claims.identity, subject.name);
    if (identity !== undefined) {
      reasons.push({ code: 'signature.identity_mismatch', message: identity, requirement: index, evidence: sig.source, key });
      continue;
    }
    reasons.push({ code: 'signature.verified', message: `cosign signature by ${key} (sha256:${v.key.fingerprint.slice(0, 16)}…)`, requirement: index, evidence: sig.source, key });
    return { held: true, reasons, primary: 'signature.verified' };
  }
  if (evidence.cosign.length === 0) {
    reasons.push({ code: 'signature.missing', message: `no cosign signature found for ${subject.digest.text}`, requirement: index });
  }
  const primary = FAILURE_RANK.find((code) => reasons.some((r) => r.code === code)) ?? 'signature.missing';
  return { held: false, reasons, primary };
}

/**
 * A GPG simple-signing requirement holds when at least one signature verifies with
 * one of its keys, signs exactly this digest, and names an acceptable identity.
 */
async function checkGpg(req: GpgRequirement, index: number, subject: Subject, evidence: Evidence, now: Date): Promise<RequirementResult> {
  const reasons: Reason[] = [];
  for (const problem of evidence.problems) {
    reasons.push({ code: 'evidence.unavailable', message: problem.message, requirement: index, evidence: problem.source });
  }
  const signatures = evidence.gpg ?? [];
  // containers/image gives up on the whole image when a blob is not an OpenPGP message at all; so do we.
  const unrecognized = signatures.filter((s) => !looksLikeOpenPgp(s.blob));
  if (unrecognized.length > 0) {
    for (const s of unrecognized) reasons.push({ code: 'signature.invalid', message: `unrecognized signature format (first byte 0x${(s.blob[0] ?? 0).toString(16).padStart(2, '0')}); a lookaside that serves this fails every pull of the image`, requirement: index, evidence: s.source });
    return { held: false, reasons, primary: 'signature.invalid' };
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
      reasons.push({ code: 'signature.digest_mismatch', message: `GPG signature is for ${v.claims.digest}, not ${subject.digest.text}`, requirement: index, evidence: sig.source, key });
      continue;
    }
    const identity = gpgIdentityProblem(req.identity, v.claims.identity, intended);
    if (identity !== undefined) {
      reasons.push({ code: 'signature.identity_mismatch', message: identity, requirement: index, evidence: sig.source, key });
      continue;
    }
    reasons.push({ code: 'signature.verified', message: `GPG signature by ${key}`, requirement: index, evidence: sig.source, key });
    return { held: true, reasons, primary: 'signature.verified' };
  }
  if (signatures.length === 0) reasons.push({ code: 'signature.missing', message: `no GPG signature found for ${subject.digest.text}`, requirement: index });
  const primary = FAILURE_RANK.find((code) => reasons.some((r) => r.code === code)) ?? 'signature.missing';
  return { held: false, reasons, primary };
}

/**
 * The first byte of a binary OpenPGP signed message as containers/image recognises it
 * (internal/signature FromBlob): compressed data, one-pass signature or signature
 * packets, old or new format. ASCII armour (0x2d) is not among them.
 */
function looksLikeOpenPgp(blob: Uint8Array): boolean {
  const b = blob[0];
  if (b === undefined) return false;
  return (b >= 0xa0 && b <= 0xa3) || b === 0xc8 || (b >= 0x90 && b <= 0x92) || b === 0xc4 || (b >= 0x88 && b <= 0x8b) || b === 0xc2;
}

/** Undefined when the signed identity is acceptable for `name`, else why not. */
function identityProblem(rule: IdentityRule, signed: string, name: string): string | undefined {
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
  else if (name === rule.prefix || name.startsWith(`${rule.prefix}/`)) expected = rule.signedPrefix + name.slice(rule.prefix.length);
  else expected = name;
  return signedName === expected ? undefined : `signed identity ${signedName} does not match ${expected}`;
}
