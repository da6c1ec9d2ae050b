import type {
  CompiledPolicy,
  Decision,
  Evidence,
  IndexMode,
  Reason,
  ReasonCode,
  Requirement,
  Rule,
  RuleAction,
  Subject,
} from './model.js';
import { checkRequirements } from './requirements.js';
import { selectRule } from './scope.js';

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
  const result = await decide(
    action,
    policy.format !== 'containers-policy.json',
    rule?.index ?? 'either',
    subject,
    evidence,
    now,
  );
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
    r.kind === 'gpg'
      ? tagged(r.identity)
      : r.kind === 'cosign'
        ? tagged(r.signedIdentity)
        : r.kind === 'attestation' || r.kind === 'notation'
          ? false
          : r.of.some(walk);
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

/** What the gateway fetches for a decision: only what the rule's requirements can use. */
export type EvidenceFormat = 'cosign' | 'gpg' | 'bundles' | 'attestations' | 'notation';

/**
 * The evidence formats the rule for a subject asks for: `.sig` signatures and
 * referrer bundles for cosign requirements, `.att` attestations and referrer bundles
 * for attestation requirements, lookaside signatures for GPG.
 */
export function formatsFor(policy: CompiledPolicy, subject: Subject): Set<EvidenceFormat> {
  const rule = selectRule(policy.rules, subject);
  const action = rule ? rule.action : policy.defaultAction;
  const out = new Set<EvidenceFormat>();
  const walk = (r: Requirement): void => {
    if (r.kind === 'cosign') {
      out.add('cosign');
      // containers-policy.json's sigstoreSigned reads the .sig tag only, as containers/image does.
      if (r.signedIdentity === undefined) out.add('bundles');
    } else if (r.kind === 'gpg') out.add('gpg');
    else if (r.kind === 'attestation') out.add('attestations').add('bundles');
    else if (r.kind === 'notation') out.add('notation');
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
  distinctSigners: boolean,
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
      const checked = await checkRequirements(action.requirements, distinctSigners, subject, evidence, now);
      const reasons = checked.reasons;
      const failed = checked.held ? undefined : (checked.denial ?? 'requirement.not_enough');
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
