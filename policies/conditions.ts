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
 * Bounded cost: an expression has at most 256 nodes and nests 32 deep, and the shape
 * rules below (shapeProblem) keep every comprehension to its own element, so
 * evaluating it costs at most its size times the predicate's size. It only ever sees
 * statements whose signature has verified. CEL's own
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

type Problem = { message: string; at: number } | undefined;

/**
 * Why the expression is refused beyond CEL's own checks, and where (a character
 * offset). The rules keep an evaluation linear in the predicate's size whatever the
 * predicate holds:
 * - a comprehension ranges over a field path (of `predicate` or `subject`, or at the
 *   top a list literal), and inside another, over a field path of that one's variable;
 * - a comprehension's body looks only at its own variables (and `predicateType`): it
 *   cannot pair each element with the whole predicate (`p in predicate.denied`,
 *   `predicate.a + predicate.a` per element);
 * - `cel.bind` (which could rebind a loop variable to the whole predicate) and
 *   `matches()` (a backtracking RegExp) are refused; `matchesRE2` takes a literal pattern.
 */
function shapeProblem(node: unknown, vars: ReadonlySet<string> | undefined): Problem {
  if (Array.isArray(node)) {
    for (const n of node) {
      const p = shapeProblem(n, vars);
      if (p) return p;
    }
    return undefined;
  }
  if (!isAst(node)) return undefined;
  const at = node.pos ?? 0;
  if (node.op === 'id' && vars !== undefined) {
    const name = node.args;
    if (typeof name === 'string' && !vars.has(name) && name !== 'predicateType')
      return {
        message: `inside a comprehension only its variables (${[...vars].join(', ')}) may be used, not ${name}: pairing each element with the whole of ${name} would cost the square of its size`,
        at,
      };
    return undefined;
  }
  const args = Array.isArray(node.args) ? (node.args as unknown[]) : [];
  if (node.op === 'rcall' || node.op === 'call') {
    const name = args[0];
    if (name === 'matches')
      return {
        message:
          "matches() runs a backtracking regular expression over the attestation's text; use matchesRE2(value, pattern), which matches the whole value in linear time",
        at,
      };
    if (name === 'bind') return { message: 'cel.bind is not supported in conditions', at };
    if (name === 'matchesRE2') {
      const params = Array.isArray(args[1]) ? (args[1] as unknown[]) : [];
      const pattern = params[1];
      if (!isAst(pattern) || pattern.op !== 'value' || typeof pattern.args !== 'string')
        return { message: 'matchesRE2 takes its pattern as a string literal', at };
      const compiled = compileIdentityPattern(pattern.args);
      if (typeof compiled === 'string') return { message: `matchesRE2: ${compiled}`, at: pattern.pos ?? at };
    }
    if (node.op === 'rcall' && typeof name === 'string' && COMPREHENSIONS.has(name)) {
      const [, range, rest] = args;
      const root = pathRoot(range);
      const literal = isAst(range) && range.op === 'list';
      if (vars !== undefined ? root === undefined || !vars.has(root) : root === undefined && !literal)
        return {
          message:
            vars !== undefined
              ? `${name}() inside another comprehension must range over a field of that comprehension's variable (${[...vars].join(', ')})`
              : `${name}() must range over a field of predicate or subject (or a list literal), not a computed list`,
          at,
        };
      const inner = Array.isArray(rest) ? (rest as unknown[]) : [];
      const declared = inner
        .slice(0, -1)
        .flatMap((n) => (isAst(n) && n.op === 'id' && typeof n.args === 'string' ? [n.args] : []));
      const rangeProblem = literal ? undefined : shapeProblem(range, vars);
      return rangeProblem ?? shapeProblem(inner.at(-1), new Set(declared));
    }
  }
  return shapeProblem(node.args, vars);
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
  const ast = (program as unknown as { ast?: unknown }).ast;
  if (!isAst(ast)) return { message: 'the expression could not be inspected for its cost', at: 0 };
  const shape = shapeProblem(ast, undefined);
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
