import { Environment } from '@marcbachmann/cel-js';
import { compileIdentityPattern } from './patterns.js';

/**
 * Conditions on an in-toto attestation, written in CEL (as Kyverno's
 * ImageValidatingPolicy writes them) and evaluated by @marcbachmann/cel-js: no I/O,
 * no functions of ours but `matchesRE2`, type-checked when the policy loads.
 *
 * Variables: `predicateType` (string), `predicate` (the statement's predicate, as
 * JSON), `subject` (the statement's subject entry for this image: `name`, `digest`).
 *
 * Bounded cost: an expression has at most 256 nodes and nests 32 deep, and a
 * comprehension (all, exists, exists_one, map, filter) inside another ranges over a
 * field of the enclosing one's element, so evaluating it costs at most its size times
 * the predicate's size. It only ever sees statements whose signature has verified. CEL's own
 * `matches()` runs a backtracking regular expression over attacker-supplied text and
 * is refused; `matchesRE2(value, pattern)` matches in linear time (RE2 syntax, whole
 * value).
 */
export interface Condition {
  /** The expression as written. */
  readonly text: string;
  /** True when it holds; else false or the evaluation error (a missing field, a wrong type). */
  evaluate(context: ConditionContext): true | string;
}

export interface ConditionContext {
  readonly predicateType: string;
  readonly predicate: unknown;
  readonly subject: { readonly name?: string | undefined; readonly digest: Readonly<Record<string, string>> };
}

export const MAX_CONDITION_CHARS = 4096;
const COMPREHENSIONS: ReadonlySet<string> = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

const patterns = new Map<string, { test(value: string): boolean } | string>();

function matchesRE2(value: string, pattern: string): boolean {
  let compiled = patterns.get(pattern);
  if (compiled === undefined) {
    compiled = compileIdentityPattern(pattern);
    if (patterns.size >= 256) patterns.clear();
    patterns.set(pattern, compiled);
  }
  if (typeof compiled === 'string') throw new Error(`matchesRE2: ${compiled}`);
  return compiled.test(value);
}

const env = new Environment({
  limits: { maxAstNodes: 256, maxDepth: 32, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 8 },
})
  .registerVariable('predicateType', 'string')
  .registerVariable('predicate', 'dyn')
  .registerVariable('subject', 'dyn')
  .registerFunction('matchesRE2(string, string): bool', matchesRE2);

interface AstNode {
  readonly op: string;
  readonly args: unknown;
  readonly pos?: number;
}

function isAst(v: unknown): v is AstNode {
  return typeof v === 'object' && v !== null && typeof (v as { op?: unknown }).op === 'string';
}

/** The variable a field path (`x.a.b`, `x["a"][0]`) starts from, or undefined when it is not a path. */
function pathRoot(node: unknown): string | undefined {
  if (!isAst(node)) return undefined;
  if (node.op === 'id') return typeof node.args === 'string' ? node.args : undefined;
  if ((node.op === '.' || node.op === '[]' || node.op === '.?') && Array.isArray(node.args))
    return pathRoot(node.args[0]);
  return undefined;
}

/**
 * Why the expression is refused beyond CEL's own checks, and where (a character
 * offset). `loopVar` is the iteration variable of the innermost enclosing
 * comprehension: a comprehension inside another must range over a field path of that
 * variable (`r.Vulnerabilities.all(v, …)` inside `Results.all(r, …)`), so each level
 * walks a part of the element above it and the whole evaluation stays linear in the
 * predicate's size.
 */
function shapeProblem(node: unknown, loopVar: string | undefined): { message: string; at: number } | undefined {
  if (Array.isArray(node)) {
    for (const n of node) {
      const p = shapeProblem(n, loopVar);
      if (p) return p;
    }
    return undefined;
  }
  if (!isAst(node)) return undefined;
  const args = Array.isArray(node.args) ? (node.args as unknown[]) : [];
  if (node.op === 'rcall' || node.op === 'call') {
    const name = args[0];
    if (name === 'matches')
      return {
        message:
          "matches() runs a backtracking regular expression over the attestation's text; use matchesRE2(value, pattern), which matches the whole value in linear time",
        at: node.pos ?? 0,
      };
    if (node.op === 'rcall' && typeof name === 'string' && COMPREHENSIONS.has(name)) {
      const [, range, rest] = args;
      if (loopVar !== undefined && pathRoot(range) !== loopVar)
        return {
          message: `${name}() inside another comprehension must range over a field of that comprehension's variable ${loopVar}; otherwise its cost grows with the square of the predicate's size`,
          at: node.pos ?? 0,
        };
      const inner = Array.isArray(rest) ? (rest as unknown[]) : [];
      const variable =
        isAst(inner[0]) && inner[0].op === 'id' && typeof inner[0].args === 'string' ? inner[0].args : undefined;
      return shapeProblem(range, loopVar) ?? shapeProblem(inner.slice(1), variable ?? loopVar);
    }
  }
  return shapeProblem(node.args, loopVar);
}

/** A condition ready to evaluate, or the problem and its character offset in `text`. */
export function compileCondition(text: string): Condition | { readonly message: string; readonly at: number } {
  if (text.length > MAX_CONDITION_CHARS) return { message: `longer than ${MAX_CONDITION_CHARS} characters`, at: 0 };
  let program;
  try {
    program = env.parse(text);
  } catch (err) {
    return celProblem(err);
  }
  const shape = shapeProblem((program as unknown as { ast: unknown }).ast, undefined);
  if (shape) return shape;
  const checked = env.check(text);
  if (!checked.valid) return celProblem(checked.error);
  if (checked.type !== 'bool' && checked.type !== 'dyn')
    return { message: `the condition is of type ${checked.type}; a condition is a bool`, at: 0 };
  return {
    text,
    evaluate(context) {
      let value: unknown;
      try {
        value = program({
          predicateType: context.predicateType,
          predicate: context.predicate,
          subject: context.subject,
        });
      } catch (err) {
        return firstLine(err);
      }
      if (value === true) return true;
      return value === false ? 'false' : `not a bool but ${typeof value}`;
    },
  };
}

function celProblem(err: unknown): { message: string; at: number } {
  const node = (err as { node?: { pos?: unknown } } | undefined)?.node;
  return { message: firstLine(err), at: typeof node?.pos === 'number' ? node.pos : 0 };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}
