import type { Evidence, NotationRequirement, Reason, Subject } from './model.js';
import { problemReasons, rank, type Candidate, type LeafCheck } from './signatures.js';
import { verifyNotation } from './verifiers/notation.js';

/**
 * A Notation requirement checked against the evidence: each Notary Project signature
 * that verifies under the requirement's trust policy is a candidate, one per signing
 * certificate; everything else is a reason. Pure.
 */
export function checkNotation(
  req: NotationRequirement,
  index: number,
  subject: Subject,
  evidence: Evidence,
  now: Date,
): LeafCheck {
  const reasons: Reason[] = problemReasons(evidence, index);
  const candidates: Candidate[] = [];
  const signatures = evidence.notation ?? [];
  for (const sig of signatures) {
    const v = verifyNotation(req, sig, subject, evidence.manifest, now);
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, requirement: index, evidence: sig.source });
      continue;
    }
    if (candidates.some((c) => c.signer === v.signer)) continue;
    const logged = v.logged.length > 0 ? `; logged at level ${req.level}: ${v.logged.join('; ')}` : '';
    candidates.push({
      signer: v.signer,
      reason: {
        code: 'signature.verified',
        message: `Notation signature by ${v.subjectDn} (trust policy ${req.name}, level ${req.level})${logged}`,
        requirement: index,
        evidence: sig.source,
        key: v.subjectDn,
      },
    });
  }
  if (signatures.length === 0)
    reasons.push({
      code: 'signature.missing',
      message: `no Notation signature found for ${subject.digest.text}`,
      requirement: index,
    });
  return { reasons, candidates, primary: rank(reasons) };
}
