import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import type { Diagnostic } from './diagnostics.js';

/**
 * A hand-written YAML file read strictly: duplicate keys, unknown keys, wrong types
 * and YAML errors all become diagnostics with line and column. Readers record every
 * problem and return `undefined` for a bad value, so one pass reports all of them.
 */
export class YamlSource {
  readonly diagnostics: Diagnostic[] = [];
  /** Findings that do not stop the file from loading (policy lint prints them as warnings). */
  readonly warnings: Diagnostic[] = [];
  readonly #lines = new LineCounter();
  readonly #root: Node | null | undefined;

  readonly #text: string;

  constructor(
    readonly file: string,
    text: string,
  ) {
    this.#text = text;
    const doc = parseDocument(text, { lineCounter: this.#lines, uniqueKeys: true, prettyErrors: false, strict: true });
    for (const e of [...doc.errors, ...doc.warnings]) {
      const pos = this.#lines.linePos(e.pos[0]);
      this.diagnostics.push({ file, line: pos.line, column: pos.col, message: e.message.split('\n')[0] ?? e.message });
    }
    this.#root = doc.errors.length > 0 ? undefined : (doc.contents as Node | null);
  }

  get root(): Node | null | undefined {
    return this.#root;
  }

  /** `where` paths of required keys already reported missing: reading them again says nothing more. */
  readonly #missing = new Set<string>();

  /** Whether a read of `where` from an absent node should stay silent (its absence is reported already). */
  #quiet(node: Node | null | undefined, where: string): boolean {
    return node === undefined && this.#missing.has(where);
  }

  /** Aliases (*name) are not expanded: say so rather than report a wrong type. */
  #alias(node: Node | null | undefined, where: string): boolean {
    if (!isAlias(node)) return false;
    this.report(
      node,
      `${where} is a YAML alias (*${String(node.source)}); aliases are not supported in policy files`,
      'write the value out',
    );
    return true;
  }

  report(node: Node | Pair | null | undefined, message: string, hint?: string): undefined {
    const offset = rangeOf(node);
    const pos = this.#lines.linePos(offset);
    this.diagnostics.push({ file: this.file, line: pos.line, column: pos.col, message, hint });
    return undefined;
  }

  /**
   * A problem at character `at` of a scalar's value (an expression's parse error): the
   * line and column in the file, for plain, quoted and block scalars alike.
   */
  reportAt(node: Node | null | undefined, at: number, message: string, hint?: string): undefined {
    const start = rangeOf(node);
    let offset = start;
    if (node && isScalar(node) && typeof node.value === 'string') {
      const before = node.value.slice(0, Math.max(0, Math.min(at, node.value.length)));
      if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') {
        // The value's lines follow the header line, each indented.
        const lines = before.split('\n');
        const first = this.#text.indexOf('\n', start) + 1;
        // The block's indentation is its first line's (the value's lines keep what is beyond it).
        const indent = /^ */.exec(this.#text.slice(first))?.[0].length ?? 0;
        let lineStart = first;
        for (let i = 0; i < lines.length - 1; i++) lineStart = this.#text.indexOf('\n', lineStart) + 1;
        offset = lineStart + indent + (lines.at(-1) as string).length;
      } else if (!before.includes('\n')) {
        offset = start + (node.type === 'PLAIN' ? 0 : 1) + before.length;
      }
    }
    const pos = this.#lines.linePos(offset);
    this.diagnostics.push({ file: this.file, line: pos.line, column: pos.col, message, hint });
    return undefined;
  }

  warn(node: Node | Pair | null | undefined, message: string, hint?: string): void {
    const pos = this.#lines.linePos(rangeOf(node));
    this.warnings.push({ file: this.file, line: pos.line, column: pos.col, message, hint });
  }

  /** A mapping with only the given keys (any key when `known` is undefined); `required` keys must be present. */
  map(
    node: Node | null | undefined,
    where: string,
    known: readonly string[] | undefined,
    required: readonly string[] = [],
  ): Map<string, Node | null> | undefined {
    if (this.#quiet(node, where) || this.#alias(node, where)) return undefined;
    if (!isMap(node))
      return this.report(
        node,
        `${where} must be a mapping`,
        known && known.length ? `key: value lines (or { ${known.slice(0, 3).join(': …, ')}: … })` : 'key: value lines',
      );
    const out = new Map<string, Node | null>();
    for (const pair of (node as YAMLMap<unknown, unknown>).items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) {
        this.report(pair.key as Node, `${where} has a non-scalar key`);
        continue;
      }
      if (known !== undefined && !known.includes(key)) {
        const near = known.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
        this.report(
          pair.key as Node,
          `unknown key "${key}" in ${where}`,
          near !== undefined ? `did you mean "${near}"?` : `expected one of: ${known.join(', ')}`,
        );
        continue;
      }
      out.set(key, (pair.value as Node | null) ?? null);
    }
    for (const key of required) {
      if (out.has(key)) continue;
      this.report(node, `${where} is missing required key "${key}"`);
      this.#missing.add(`${where}.${key}`);
    }
    return out;
  }

  seq(node: Node | null | undefined, where: string): Node[] | undefined {
    if (this.#quiet(node, where) || this.#alias(node, where)) return undefined;
    if (!isSeq(node)) return this.report(node, `${where} must be a list`, 'one "- item" per line, or [a, b]');
    return node.items as Node[];
  }

  string(node: Node | null | undefined, where: string): string | undefined {
    if (this.#quiet(node, where) || this.#alias(node, where)) return undefined;
    if (!isScalar(node) || typeof node.value !== 'string' || node.value.length === 0) {
      return this.report(
        node,
        `${where} must be a non-empty string`,
        'quote it when it could be read as something else: "1.0", "yes"',
      );
    }
    return node.value;
  }

  oneOf<T extends string>(node: Node | null | undefined, where: string, values: readonly T[]): T | undefined {
    if (this.#quiet(node, where) || this.#alias(node, where)) return undefined;
    const s = isScalar(node) ? node.value : undefined;
    if (typeof s === 'string' && (values as readonly string[]).includes(s)) return s as T;
    const near =
      typeof s === 'string'
        ? values.find((v) => v.toLowerCase() === s.toLowerCase() || v.startsWith(s) || s.startsWith(v))
        : undefined;
    return this.report(
      node,
      `${where} must be one of: ${values.join(', ')}`,
      near !== undefined ? `did you mean ${near}?` : undefined,
    );
  }

  integer(node: Node | null | undefined, where: string, min: number, max: number): number | undefined {
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return this.report(node, `${where} must be a whole number from ${min} to ${max}`);
    }
    return v;
  }

  boolean(node: Node | null | undefined, where: string): boolean | undefined {
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== 'boolean') return this.report(node, `${where} must be true or false`);
    return v;
  }

  /** Whether `node` is a mapping that has `key` (to choose which keys are required). */
  isMapWith(node: Node | null | undefined, key: string): boolean {
    return isMap(node) && (node as YAMLMap<unknown, unknown>).items.some((p) => isScalar(p.key) && p.key.value === key);
  }

  isScalarValue(node: Node | null | undefined): boolean {
    return isScalar(node);
  }
}

function rangeOf(node: Node | Pair | null | undefined): number {
  if (!node) return 0;
  const n = node as { range?: [number, number, number] | null; key?: { range?: [number, number, number] | null } };
  if (n.range) return n.range[0];
  if (n.key?.range) return n.key.range[0];
  return 0;
}

/** Edit distance (insertions, deletions, substitutions), for "did you mean" hints. */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(
        (prev[j] ?? 0) + 1,
        (cur[j - 1] ?? 0) + 1,
        (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
