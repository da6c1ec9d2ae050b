import type { Evidence, Reason, ReasonCode, Requirement, Subject } from './model.js';
import { checkAttestation } from './attestations.js';
import { checkNotation } from './notation-check.js';
import { checkCosign, checkGpg, type LeafCheck } from './signatures.js';

/**
 * A rule's requirement list, with its combinators (allOf, anyOf, atLeast), decided
 * over the evidence. Pure.
 *
 * Combinators count signers, not requirements: a signer (one key; several signatures
 * by it are still one signer) counts toward one signature requirement only. With
 * `of: [cosign {keys: [a, b]}, cosign {keys: [b, c]}]` and only b's signature, one
 * member holds, not two. In the portcullis format the rule's `require` list is an
 * allOf in this sense too; a containers-policy.json requirement list is checked as
 * containers/image checks it, each requirement on its own.
 *
 * Which signer counts where is found by a bounded search over the candidates each
 * requirement has (a matching): an admission never depends on the order signatures
 * came in.
 */
export interface RequirementsOutcome {
  readonly held: boolean;
  readonly reasons: Reason[];
  /** The first requirement's failure that is not held (`requirement.not_enough` for a combinator). */
  readonly denial?: ReasonCode | undefined;
}

type Node =
  | { readonly kind: 'leaf'; readonly leaf: number; readonly path: readonly number[] }
  | {
      readonly kind: 'combined';
      readonly what: 'allOf' | 'anyOf' | 'atLeast';
      readonly need: number;
      readonly of: readonly Node[];
      readonly path: readonly number[];
    };

/** More than this many steps of the search and the requirement is refused as too complex. */
const SEARCH_LIMIT = 200_000;

export async function checkRequirements(
  requirements: readonly Requirement[],
  distinctSigners: boolean,
  subject: Subject,
  evidence: Evidence,
  now: Date,
): Promise<RequirementsOutcome> {
  const leaves: LeafCheck[] = [];
  const build = async (r: Requirement, path: number[]): Promise<Node> => {
    const top = path[0] ?? 0;
    if (r.kind === 'cosign' || r.kind === 'gpg' || r.kind === 'attestation' || r.kind === 'notation') {
      leaves.push(
        r.kind === 'cosign'
          ? checkCosign(r, top, subject, evidence)
          : r.kind === 'attestation'
            ? checkAttestation(r, top, subject, evidence)
            : r.kind === 'notation'
              ? checkNotation(r, top, subject, evidence, now)
              : await checkGpg(r, top, subject, evidence, now),
      );
      return { kind: 'leaf', leaf: leaves.length - 1, path };
    }
    const of: Node[] = [];
    for (const [i, child] of r.of.entries()) of.push(await build(child, [...path, i]));
    const need = r.kind === 'allOf' ? r.of.length : r.kind === 'anyOf' ? 1 : r.count;
    return { kind: 'combined', what: r.kind, need, of, path };
  };
  const top: Node[] = [];
  for (const [i, r] of requirements.entries()) top.push(await build(r, [i]));
  const root: Node = { kind: 'combined', what: 'allOf', need: top.length, of: top, path: [] };

  let pick: (number | undefined)[];
  let tooComplex = false;
  if (distinctSigners) {
    const found = search(root, leaves);
    tooComplex = found === 'too-complex';
    pick = Array.isArray(found) ? found : greedy(leaves);
  } else {
    pick = leaves.map((l) => (l.candidates.length > 0 ? 0 : undefined));
  }
  const reasons: Reason[] = [];
  const usedBy = new Map<string, readonly number[]>();
  const leafPaths: (readonly number[])[] = [];
  const collectPaths = (n: Node): void => {
    if (n.kind === 'leaf') leafPaths[n.leaf] = n.path;
    else n.of.forEach(collectPaths);
  };
  collectPaths(root);
  pick.forEach((p, i) => {
    if (p !== undefined) usedBy.set((leaves[i] as LeafCheck).candidates[p]?.signer ?? '', leafPaths[i] ?? []);
  });
  const held = (n: Node): boolean =>
    n.kind === 'leaf' ? pick[n.leaf] !== undefined : n.of.filter(held).length >= n.need;
  const report = (n: Node): void => {
    if (n.kind === 'leaf') {
      const leaf = leaves[n.leaf] as LeafCheck;
      reasons.push(...leaf.reasons);
      const p = pick[n.leaf];
      if (p !== undefined) reasons.push((leaf.candidates[p] as LeafCheck['candidates'][number]).reason);
      else {
        for (const c of leaf.candidates) {
          const other = usedBy.get(c.signer);
          reasons.push({
            ...c.reason,
            code: 'signature.counted_elsewhere',
            message: `${c.reason.message} verifies, but this signer already counts toward requirement ${dotted(other ?? [])}; a signer counts once`,
          });
        }
      }
      return;
    }
    n.of.forEach(report);
    if (n.path.length > 0 && !held(n)) {
      const count = n.of.filter(held).length;
      const what = n.what === 'allOf' ? 'all' : n.what === 'anyOf' ? 'any' : `at least ${n.need}`;
      reasons.push({
        code: 'requirement.not_enough',
        message: `${count} of ${n.of.length} held with a different signer each; ${what} of them must (requirement ${dotted(n.path)})`,
        requirement: n.path[0] ?? 0,
      });
    }
  };
  report(root);
  if (tooComplex) {
    reasons.push({
      code: 'requirement.not_enough',
      message: `the requirements and signatures give more than ${SEARCH_LIMIT} combinations to try; refused`,
    });
    return { held: false, reasons, denial: 'requirement.not_enough' };
  }
  const failedTop = top.find((n) => !held(n));
  if (failedTop === undefined) return { held: true, reasons };
  const denial: ReasonCode =
    failedTop.kind === 'combined' || (leaves[failedTop.leaf] as LeafCheck).candidates.length > 0
      ? 'requirement.not_enough'
      : (leaves[failedTop.leaf] as LeafCheck).primary;
  return { held: false, reasons, denial };
}

function dotted(path: readonly number[]): string {
  return path.map((p) => p + 1).join('.');
}

/** Each leaf its first candidate whose signer is not taken yet (for reporting a failure). */
function greedy(leaves: readonly LeafCheck[]): (number | undefined)[] {
  const used = new Set<string>();
  return leaves.map((l) => {
    const i = l.candidates.findIndex((c) => !used.has(c.signer));
    if (i < 0) return undefined;
    used.add((l.candidates[i] as LeafCheck['candidates'][number]).signer);
    return i;
  });
}

/**
 * Depth-first over the leaves: each takes one of its candidates whose signer is not
 * taken yet, or none; a branch is cut as soon as the root can no longer hold. The
 * first assignment under which the root holds is returned (candidates are tried
 * before "none", so every leaf that can count does).
 */
function search(root: Node, leaves: readonly LeafCheck[]): (number | undefined)[] | undefined | 'too-complex' {
  const pick: (number | undefined)[] = leaves.map(() => undefined);
  const used = new Set<string>();
  let steps = 0;
  const status = (n: Node, decided: number): 'yes' | 'no' | 'maybe' => {
    if (n.kind === 'leaf') {
      if (n.leaf < decided) return pick[n.leaf] !== undefined ? 'yes' : 'no';
      return (leaves[n.leaf] as LeafCheck).candidates.some((c) => !used.has(c.signer)) ? 'maybe' : 'no';
    }
    let yes = 0;
    let maybe = 0;
    for (const child of n.of) {
      const s = status(child, decided);
      if (s === 'yes') yes++;
      else if (s === 'maybe') maybe++;
    }
    return yes >= n.need ? 'yes' : yes + maybe < n.need ? 'no' : 'maybe';
  };
  const dfs = (k: number): boolean => {
    if (++steps > SEARCH_LIMIT) throw new RangeError('too complex');
    const s = status(root, k);
    if (s === 'no') return false;
    if (k === leaves.length) return s === 'yes';
    for (const [ci, c] of (leaves[k] as LeafCheck).candidates.entries()) {
      if (used.has(c.signer)) continue;
      used.add(c.signer);
      pick[k] = ci;
      if (dfs(k + 1)) return true;
      used.delete(c.signer);
    }
    pick[k] = undefined;
    return dfs(k + 1);
  };
  try {
    return dfs(0) ? pick : undefined;
  } catch (err) {
    if (err instanceof RangeError && err.message === 'too complex') return 'too-complex';
    throw err;
  }
}
