import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { parseDigest } from '../oci/digest.js';
import { isValidHost } from '../oci/reference.js';
import { LoadError } from './errors.js';
import { parsePublicKey } from './keys.js';
import type { CompiledPolicy, IdentityRule, Requirement, Rule, RuleAction, TrustedKey } from './model.js';
import { normalizeScope } from './scope.js';
import { YamlSource } from './yaml-source.js';

/**
 * Loads a policy file: all the I/O of the policy layer happens here (the file, the
 * key files it names). Every problem is collected and reported at once with file,
 * line and column; a policy with any problem is not used.
 *
 *   version: 1
 *   default: reject                    # reject | accept-anything
 *   rules:
 *     - scope: registry.example.com/team
 *       require:
 *         - cosign: { keys: [keys/team.pub], identity: repository }
 *     - scope: registry.example.com/public/tools
 *       accept: anything
 *     - scope: registry.example.com/legacy
 *       reject: "retired; use registry.example.com/team"
 */
export const MAX_RULES = 1000;
const MAX_KEYS = 64;

export function loadPolicyFile(path: string): CompiledPolicy {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (cause) {
    throw new LoadError('FILE_UNREADABLE', [{ file: path, line: 1, column: 1, message: `cannot read policy file: ${(cause as Error).message}` }], { cause });
  }
  return compilePolicy(path, text.toString('utf8'), (keyPath) => readFileSync(resolve(dirname(path), keyPath)));
}

/** Compiles policy text; `readKey` resolves a key path named in the file. */
export function compilePolicy(file: string, text: string, readKey: (path: string) => Buffer): CompiledPolicy {
  const src = new YamlSource(file, text);
  const hash = createHash('sha256').update(text);
  const keyCache = new Map<string, TrustedKey | undefined>();

  const loadKey = (node: Node | null, where: string): TrustedKey | undefined => {
    const path = src.string(node, where);
    if (path === undefined) return undefined;
    if (keyCache.has(path)) return keyCache.get(path);
    let bytes: Buffer;
    try {
      bytes = readKey(path);
    } catch (err) {
      keyCache.set(path, undefined);
      return src.report(node, `cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'key paths are relative to the policy file');
    }
    hash.update(`\0${path}\0`).update(bytes);
    const key = parsePublicKey(bytes.toString('utf8'), path);
    if (typeof key === 'string') {
      keyCache.set(path, undefined);
      return src.report(node, `key ${path}: ${key}`);
    }
    keyCache.set(path, key);
    return key;
  };

  const identity = (node: Node | null | undefined, where: string): IdentityRule | undefined => {
    if (node === undefined) return { kind: 'repository' };
    if (src.isScalarValue(node)) {
      const v = src.oneOf(node, where, ['repository', 'any'] as const);
      return v === undefined ? undefined : { kind: v };
    }
    const m = src.map(node, where, ['exact', 'prefix', 'signedPrefix']);
    if (!m) return undefined;
    if (m.has('exact')) {
      if (m.size !== 1) return src.report(node, `${where}: "exact" stands alone`);
      const repo = src.string(m.get('exact'), `${where}.exact`);
      return repo === undefined ? undefined : { kind: 'exact', repository: normalizeScope(repo) };
    }
    const prefix = src.string(m.get('prefix'), `${where}.prefix`);
    const signedPrefix = src.string(m.get('signedPrefix'), `${where}.signedPrefix`);
    if (prefix === undefined || signedPrefix === undefined) return undefined;
    return { kind: 'remap', prefix: normalizeScope(prefix), signedPrefix: normalizeScope(signedPrefix) };
  };

  const requirement = (node: Node, where: string): Requirement | undefined => {
    const m = src.map(node, where, ['cosign']);
    if (!m) return undefined;
    if (m.size !== 1) return src.report(node, `${where} must name exactly one signature type`, 'supported: cosign');
    const c = src.map(m.get('cosign'), `${where}.cosign`, ['keys', 'identity'], ['keys']);
    if (!c) return undefined;
    const keyNodes = src.seq(c.get('keys'), `${where}.cosign.keys`);
    if (!keyNodes) return undefined;
    if (keyNodes.length === 0 || keyNodes.length > MAX_KEYS) return src.report(c.get('keys'), `${where}.cosign.keys must list 1 to ${MAX_KEYS} keys`);
    const keys = keyNodes.map((k, i) => loadKey(k, `${where}.cosign.keys[${i}]`));
    const id = identity(c.get('identity'), `${where}.cosign.identity`);
    if (keys.some((k) => k === undefined) || id === undefined) return undefined;
    return { kind: 'cosign', keys: keys as TrustedKey[], identity: id };
  };

  const action = (m: Map<string, Node | null>, node: Node, where: string): RuleAction | undefined => {
    const present = ['require', 'accept', 'reject'].filter((k) => m.has(k));
    if (present.length !== 1) return src.report(node, `${where} needs exactly one of require, accept or reject`);
    if (m.has('accept')) {
      return src.oneOf(m.get('accept'), `${where}.accept`, ['anything'] as const) ? { kind: 'accept-anything' } : undefined;
    }
    if (m.has('reject')) {
      const v = m.get('reject');
      if (src.isScalarValue(v) && (v as { value: unknown }).value === true) return { kind: 'reject', message: undefined };
      const message = src.string(v, `${where}.reject`);
      return message === undefined ? undefined : { kind: 'reject', message };
    }
    const list = src.seq(m.get('require'), `${where}.require`);
    if (!list) return undefined;
    if (list.length === 0) return src.report(m.get('require'), `${where}.require is empty`, 'an empty requirement list would deny everything; use reject: true to say so');
    const reqs = list.map((r, i) => requirement(r, `${where}.require[${i}]`));
    return reqs.every((r) => r !== undefined) ? { kind: 'require', requirements: reqs as Requirement[] } : undefined;
  };

  const rules: Rule[] = [];
  let defaultAction: RuleAction = { kind: 'reject', message: 'no rule matches and the default is reject' };
  const top = src.root === undefined ? undefined : src.map(src.root, 'the policy', ['version', 'default', 'rules'], ['rules']);
  if (top) {
    if (top.has('version')) src.integer(top.get('version'), 'version', 1, 1);
    const d = top.has('default') ? src.oneOf(top.get('default'), 'default', ['reject', 'accept-anything'] as const) : 'reject';
    if (d === 'accept-anything') defaultAction = { kind: 'accept-anything' };
    const list = src.seq(top.get('rules'), 'rules') ?? [];
    if (list.length > MAX_RULES) src.report(top.get('rules'), `at most ${MAX_RULES} rules`);
    const seen = new Map<string, number>();
    list.slice(0, MAX_RULES).forEach((ruleNode, i) => {
      const where = `rules[${i}]`;
      const m = src.map(ruleNode, where, ['scope', 'require', 'accept', 'reject'], ['scope']);
      if (!m) return;
      const rawScope = src.string(m.get('scope'), `${where}.scope`);
      let scope: string | undefined;
      if (rawScope !== undefined) {
        scope = normalizeScope(rawScope);
        const host = scope.split('/')[0] ?? '';
        if (!isValidHost(host) || scope.endsWith('/') || scope.includes('//')) {
          src.report(m.get('scope'), `${where}.scope ${JSON.stringify(rawScope)} is not host[/path]`, 'for example registry.example.com/team');
          scope = undefined;
        } else if (seen.has(scope)) {
          src.report(m.get('scope'), `${where}.scope ${scope} repeats the scope of rules[${seen.get(scope)}]`);
          scope = undefined;
        } else {
          seen.set(scope, i);
        }
      }
      const act = action(m, ruleNode, where);
      if (scope !== undefined && act !== undefined) rules.push({ scope, action: act });
    });
  } else if (src.root === null) {
    src.report(null, 'the policy file is empty');
  }
  if (src.diagnostics.length > 0) throw new LoadError('POLICY_INVALID', src.diagnostics);
  return Object.freeze({ source: file, digest: parseDigest(`sha256:${hash.digest('hex')}`), defaultAction, rules: Object.freeze(rules) });
}

/** The embedded default: reject everything. */
export function rejectEverythingPolicy(): CompiledPolicy {
  return compilePolicy('(embedded default policy)', 'version: 1\ndefault: reject\nrules: []\n', () => {
    throw new Error('no keys');
  });
}
