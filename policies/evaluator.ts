import { parseImageReference } from '../oci/reference.js';
import { gpgIdentityProblem, intendedRef } from './gpg-identity.js';
import type {
  CompiledPolicy,
  CosignRequirement,
  Decision,
  Evidence,
  GpgRequirement,
  IdentityRule,
  IndexMode,
  Reason,
  ReasonCode,
  Requirement,
  Rule,
  RuleAction,
  Subject,
} from './model.js';
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
export async function evaluate(
  policy: CompiledPolicy,
  subject: Subject,
  evidence: Evidence,
  now: Date = new Date(),
): Promise<Decision> {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  const ruleName = nameOf(rule);
  const mode = rule?.mode ?? 'enforce';
  const base = { rule: ruleName, policyDigest: policy.digest.text, mode };
  // Revocation is never softened by a mode.
  if (policy.revoked?.has(subject.digest.text)) {
    const why = policy.revoked.get(subject.digest.text);
    return {
      ...base,
      mode: 'enforce',
      allowed: false,
      verdict: false,
      attestable: false,
      denial: 'policy.revoked',
      reasons: [{ code: 'policy.revoked', message: `${subject.digest.text} is revoked${why ? `: ${why}` : ''}` }],
    };
  }
  const result = await decide(action, rule?.index ?? 'either', subject, evidence, now);
  if (result.allowed || mode === 'enforce') {
    return {
      ...base,
      allowed: result.allowed,
      verdict: result.allowed,
      attestable: result.allowed && result.attestable,
      reasons: result.reasons,
      ...(result.denial ? { denial: result.denial } : {}),
    };
  }
  // warn / audit: admitted, and what enforce would have decided is kept with it.
  return {
    ...base,
    allowed: true,
    verdict: false,
    attestable: false,
    denial: result.denial,
    reasons: [
      {
        code: 'policy.not_enforced',
        message: `${mode} mode: admitted although enforcing this rule would deny it (${result.denial ?? 'denied'})`,
      },
      ...result.reasons,
    ],
  };
}

function nameOf(rule: Rule | undefined): string {
  return rule ? (rule.match === 'transport-default' ? 'docker ""' : rule.scope) : 'default';
}

/** The name of the rule that applies (its scope, `docker ""`, or `default`), as decisions record it. */
export function ruleNameFor(
  policy: CompiledPolicy,
  subject: Pick<Subject, 'name' | 'tag'> & { digest?: Subject['digest'] | undefined },
): string {
  return nameOf(selectRule(policy.rules, subject));
}

/**
 * Whether the rule for a subject compares the tag asked for (GPG identity rules, or a
 * containers-policy.json signedIdentity, other than matchRepository and
 * exactRepository): then a decision holds only for the tag it was made for.
 */
export function comparesTag(
  policy: CompiledPolicy,
  subject: Pick<Subject, 'name' | 'tag'> & { digest?: Subject['digest'] | undefined },
): boolean {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  const tagged = (id: { kind: string } | undefined) =>
    id !== undefined && id.kind !== 'matchRepository' && id.kind !== 'exactRepository';
  const walk = (r: Requirement): boolean =>
    r.kind === 'gpg' ? tagged(r.identity) : r.kind === 'cosign' ? tagged(r.signedIdentity) : r.of.some(walk);
  return action.kind === 'require' && action.requirements.some(walk);
}

/**
 * A pull by tag under a rule with `tags: require-digest` is refused before any
 * signature is looked at: the decision for it, or undefined when the rule allows it.
 */
export function tagRefusal(
  policy: CompiledPolicy,
  subject: Pick<Subject, 'name' | 'tag'> & { digest?: Subject['digest'] | undefined },
): Decision | undefined {
  const rule = selectRule(policy.rules, subject);
  if (rule?.tags !== 'require-digest' || subject.tag === undefined) return undefined;
  return {
    allowed: false,
    verdict: false,
    mode: 'enforce',
    attestable: false,
    rule: nameOf(rule),
    policyDigest: policy.digest.text,
    denial: 'policy.digest_required',
    reasons: [
      {
        code: 'policy.digest_required',
        message: `the rule for ${rule.scope} admits pulls by digest only (tags: require-digest); ask for ${subject.name}@sha256:…`,
      },
    ],
  };
}

/**
 * A request refused by what the client asked for alone, before anything is fetched:
 * the rule for the name (with the tag or digest asked for) rejects and is enforced,
 * or the digest asked for is revoked. Without a tag or digest (tag lists, referrers,
 * blobs) a repository is refused only when no rule for one of its references (a
 * containers-policy.json scope with a tag or digest) could admit something in it.
 * Such a refusal fetches nothing and names nothing the client did not ask for.
 */
export function nameRefusal(
  policy: CompiledPolicy,
  subject: Pick<Subject, 'name' | 'tag'> & { digest?: Subject['digest'] | undefined },
): Decision | undefined {
  const rule = selectRule(policy.rules, subject);
  const base = {
    allowed: false,
    verdict: false,
    mode: 'enforce' as const,
    attestable: false,
    policyDigest: policy.digest.text,
  };
  if (subject.digest !== undefined && subject.tag === undefined && policy.revoked?.has(subject.digest.text)) {
    const why = policy.revoked.get(subject.digest.text);
    return {
      ...base,
      rule: nameOf(rule),
      denial: 'policy.revoked',
      reasons: [{ code: 'policy.revoked', message: `${subject.digest.text} is revoked${why ? `: ${why}` : ''}` }],
    };
  }
  const action = rule ? rule.action : policy.defaultAction;
  if (action.kind !== 'reject' || (rule?.mode ?? 'enforce') !== 'enforce') return undefined;
  if (subject.tag === undefined && subject.digest === undefined) {
    const referenced = policy.rules.some(
      (r) =>
        r.match === 'reference' &&
        (r.scope.startsWith(`${subject.name}:`) || r.scope.startsWith(`${subject.name}@`)) &&
        (r.action.kind !== 'reject' || (r.mode ?? 'enforce') !== 'enforce'),
    );
    if (referenced) return undefined;
  }
  return {
    ...base,
    rule: nameOf(rule),
    denial: 'policy.rejected',
    reasons: [{ code: 'policy.rejected', message: action.message ?? 'the policy rejects images in this scope' }],
  };
}

/** The rule that applies to a subject (or undefined: the policy's default). */
export function ruleFor(
  policy: CompiledPolicy,
  subject: Pick<Subject, 'name' | 'tag'> & { digest?: Subject['digest'] | undefined },
): Rule | undefined {
  return selectRule(policy.rules, subject);
}

/** The signature formats the rule for a subject asks for: the gateway fetches only those. */
export function formatsFor(policy: CompiledPolicy, subject: Subject): Set<'cosign' | 'gpg'> {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  const out = new Set<'cosign' | 'gpg'>();
  const walk = (r: Requirement): void => {
    if (r.kind === 'cosign' || r.kind === 'gpg') out.add(r.kind);
    else r.of.forEach(walk);
  };
  if (action.kind === 'require') action.requirements.forEach(walk);
  return out;
}

interface Outcome {
  readonly allowed: boolean;
  readonly attestable: boolean;
  readonly reasons: Reason[];
  readonly denial?: ReasonCode | undefined;
}

async function decide(
  action: RuleAction,
  index: IndexMode,
  subject: Subject,
  evidence: Evidence,
  now: Date,
): Promise<Outcome> {
  switch (action.kind) {
    case 'reject':
      return deny([{ code: 'policy.rejected', message: action.message ?? 'the policy rejects images in this scope' }]);
    case 'accept-anything':
      return {
        allowed: true,
        attestable: false,
        reasons: [{ code: 'policy.accept_anything', message: 'the policy accepts anything in this scope (insecure)' }],
      };
    case 'require': {
      if (action.requirements.length === 0)
        return deny([{ code: 'policy.rejected', message: 'the rule has no requirements' }]);
      if (index === 'signed-platform' && subject.kind === 'index') {
        // Only a list: each platform manifest is verified on its own when it is fetched.
        return {
          allowed: true,
          attestable: false,
          reasons: [
            {
              code: 'index.children_verified_separately',
              message: 'index: signed-platform — every platform manifest it lists is verified on its own',
            },
          ],
        };
      }
      const reasons: Reason[] = [];
      let failed: ReasonCode | undefined;
      for (const [i, req] of action.requirements.entries()) {
        const r = await checkRequirement(req, [i], subject, evidence, now);
        reasons.push(...r.reasons);
        if (!r.held && failed === undefined) failed = r.primary;
      }
      const covered = evidence.coveringIndex !== undefined && index !== 'signed-platform' && subject.kind !== 'index';
      if (index === 'signed-index' && subject.kind !== 'index') {
        // A platform manifest counts only through a signed index that lists it.
        if (covered)
          return {
            allowed: true,
            attestable: true,
            reasons: [
              { code: 'signature.covered_by_index', message: `listed in admitted index ${evidence.coveringIndex}` },
            ],
          };
        return {
          allowed: false,
          attestable: false,
          denial: 'index.not_covered',
          reasons: [
            {
              code: 'index.not_covered',
              message:
                'index: signed-index — a platform manifest is admitted only through a signed index that lists it',
            },
            ...reasons,
          ],
        };
      }
      if (failed === undefined) return { allowed: true, attestable: true, reasons };
      if (covered) {
        // The index that lists this manifest was admitted under this same rule: its
        // signatures cover the children it names (cosign signs an index digest only).
        return {
          allowed: true,
          attestable: true,
          reasons: [
            { code: 'signature.covered_by_index', message: `listed in admitted index ${evidence.coveringIndex}` },
            ...reasons,
          ],
        };
      }
      return { allowed: false, attestable: false, reasons, denial: failed };
    }
  }
}

function deny(reasons: Reason[]): Outcome {
  return { allowed: false, attestable: false, reasons, denial: reasons[0]?.code ?? 'policy.rejected' };
}

interface RequirementResult {
  readonly held: boolean;
  readonly reasons: Reason[];
  readonly primary: ReasonCode;
}

/** `path`: where the requirement sits, e.g. [1, 0] for the first child of the second requirement. */
async function checkRequirement(
  req: Requirement,
  path: readonly number[],
  subject: Subject,
  evidence: Evidence,
  now: Date,
): Promise<RequirementResult> {
  const index = path[0] ?? 0;
  if (req.kind === 'gpg') return checkGpg(req, index, subject, evidence, now);
  if (req.kind === 'cosign') return checkCosign(req, index, subject, evidence);
  const results: RequirementResult[] = [];
  for (const [i, child] of req.of.entries())
    results.push(await checkRequirement(child, [...path, i], subject, evidence, now));
  const held = results.filter((r) => r.held).length;
  const need = req.kind === 'allOf' ? req.of.length : req.kind === 'anyOf' ? 1 : req.count;
  const reasons = results.flatMap((r) => r.reasons);
  if (held >= need) return { held: true, reasons, primary: 'signature.verified' };
  const what = req.kind === 'allOf' ? 'all' : req.kind === 'anyOf' ? 'any' : `at least ${need}`;
  reasons.push({
    code: 'requirement.not_enough',
    message: `${held} of ${req.of.length} held; ${what} of them must (requirement ${path.map((p) => p + 1).join('.')})`,
    requirement: index,
  });
  const primary =
    FAILURE_RANK.find((code) => results.some((r) => !r.held && r.primary === code)) ?? 'requirement.not_enough';
  return { held: false, reasons, primary };
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
    reasons.push({
      code: 'evidence.unavailable',
      message: problem.message,
      requirement: index,
      evidence: problem.source,
    });
  }
  for (const sig of evidence.cosign) {
    const v = verifyCosignSignature(sig, req.keys);
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, requirement: index, evidence: sig.source });
      continue;
    }
    const key = v.key.source;
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
    reasons.push({
      code: 'signature.verified',
      message: `cosign signature by ${key} (sha256:${v.key.fingerprint.slice(0, 16)}…)`,
      requirement: index,
      evidence: sig.source,
      key,
    });
    return { held: true, reasons, primary: 'signature.verified' };
  }
  if (evidence.cosign.length === 0) {
    reasons.push({
      code: 'signature.missing',
      message: `no cosign signature found for ${subject.digest.text}`,
      requirement: index,
    });
  }
  const primary = FAILURE_RANK.find((code) => reasons.some((r) => r.code === code)) ?? 'signature.missing';
  return { held: false, reasons, primary };
}

/**
 * A GPG simple-signing requirement holds when at least one signature verifies with
 * one of its keys, signs exactly this digest, and names an acceptable identity.
 */
async function checkGpg(
  req: GpgRequirement,
  index: number,
  subject: Subject,
  evidence: Evidence,
  now: Date,
): Promise<RequirementResult> {
  const reasons: Reason[] = [];
  for (const problem of evidence.problems) {
    reasons.push({
      code: 'evidence.unavailable',
      message: problem.message,
      requirement: index,
      evidence: problem.source,
    });
  }
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
    reasons.push({
      code: 'signature.verified',
      message: `GPG signature by ${key}`,
      requirement: index,
      evidence: sig.source,
      key,
    });
    return { held: true, reasons, primary: 'signature.verified' };
  }
  if (signatures.length === 0)
    reasons.push({
      code: 'signature.missing',
      message: `no GPG signature found for ${subject.digest.text}`,
      requirement: index,
    });
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
  else if (name === rule.prefix || name.startsWith(`${rule.prefix}/`))
    expected = rule.signedPrefix + name.slice(rule.prefix.length);
  else expected = name;
  return signedName === expected ? undefined : `signed identity ${signedName} does not match ${expected}`;
}
