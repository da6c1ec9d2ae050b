import { readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { parseDigest } from '../oci/digest.js';
import { isRepositoryComponent, isValidHost } from '../oci/reference.js';
import { LoadError } from './errors.js';
import { KeyFiles } from './key-files.js';
import { compileContainersPolicy, strictJsonProblem } from './containers-policy.js';
import { compileNotationRequirement, compileNotationTrustPolicy } from './notation-policy.js';
import { parseGpgKeyring } from './gpg-keys.js';
import { parseRef } from './gpg-identity.js';
import { parsePublicKey } from './keys.js';
import { compileIdentityPattern } from './patterns.js';
import { compileCondition, type Condition } from './conditions.js';
import type {
  IdentityMatcher,
  KeylessRule,
  KeylessTrust,
  SigstoreThresholds,
  CompiledPolicy,
  GpgIdentityRule,
  GpgTrustedKey,
  IdentityRule,
  Requirement,
  Rule,
  RuleAction,
  TrustedKey,
} from './model.js';
import { isIdentityPrefix, normalizeScope } from './scope.js';
import { DEFAULT_THRESHOLDS, loadTrustedRoot, publicGoodTrust } from './verifiers/cosign-keyless.js';
import { FULCIO_CLAIMS } from './verifiers/fulcio-identity.js';
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
 *         - gpg: { keys: [keys/release.gpg], identity: matchRepoDigestOrExact }
 *     - scope: registry.example.com/public/tools
 *       accept: anything
 *     - scope: registry.example.com/legacy
 *       reject: "retired; use registry.example.com/team"
 *     - scope: registry.example.com/release
 *       mode: enforce                  # enforce | warn | audit
 *       tags: pin                      # follow | pin | require-digest
 *       index: signed-platform         # either | signed-index | signed-platform
 *       require:
 *         - atLeast: 2
 *           of: [{ cosign: { keys: [keys/a.pub] } }, { cosign: { keys: [keys/b.pub] } }, { gpg: { keys: [keys/c.gpg] } }]
 *   revoked:
 *     - sha256:…                       # or { digest: sha256:…, reason: "CVE-…" }
 */
export const MAX_RULES = 1000;

export { publicGoodTrust } from './verifiers/cosign-keyless.js';

const MAX_KEYS = 64;
/** What a policy is compiled with besides its files. */
export interface CompileOptions {
  /**
   * The Sigstore trusted root for keyless rules that name none (and for log entries in
   * key-based bundles), e.g. one refreshed over TUF; default: the shipped public-good
   * root. Its digest becomes part of the policy digest, so a new root re-decides.
   */
  readonly defaultRoot?: { readonly trust: KeylessTrust; readonly digest: string } | undefined;
}

export async function loadPolicyFile(path: string, options: CompileOptions = {}): Promise<CompiledPolicy> {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (cause) {
    throw new LoadError(
      'FILE_UNREADABLE',
      [{ file: path, line: 1, column: 1, message: `cannot read policy file: ${(cause as Error).message}` }],
      { cause },
    );
  }
  const readKey = (keyPath: string) => readFileSync(resolve(dirname(path), keyPath));
  const body = text.toString('utf8');
  // Notation's trustpolicy.oci.json, with its truststore/ directory beside it, is taken as it is.
  if (isNotationTrustPolicy(path, body)) {
    const strict = strictJsonProblem(path, body);
    if (strict) throw new LoadError('POLICY_INVALID', [strict]);
    return compileNotationTrustPolicy(path, body, readKey, (dir) => listStoreDir(resolve(dirname(path), dir)));
  }
  // containers-policy.json (podman's /etc/containers/policy.json) is taken as it is.
  if (path.endsWith('.json') || body.trimStart().startsWith('{')) return compileContainersPolicy(path, body, readKey);
  return compilePolicy(path, body, readKey, options);
}

function isNotationTrustPolicy(path: string, body: string): boolean {
  if (/(^|\/)trustpolicy(\.oci)?\.json$/.test(path)) return true;
  try {
    const doc = JSON.parse(body) as unknown;
    return typeof doc === 'object' && doc !== null && 'trustPolicies' in doc;
  } catch {
    return false;
  }
}

function listStoreDir(dir: string): { files: string[]; subdirectories: number } | string {
  try {
    const entries = readdirSync(dir, { withFileTypes: true });
    return {
      files: entries
        .filter((e) => e.isFile())
        .map((e) => e.name)
        .sort(),
      subdirectories: entries.filter((e) => e.isDirectory()).length,
    };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

/** Compiles policy text; `readKey` resolves a key path named in the file. */
export async function compilePolicy(
  file: string,
  text: string,
  readKey: (path: string) => Buffer,
  options: CompileOptions = {},
): Promise<CompiledPolicy> {
  const src = new YamlSource(file, text);
  let usesDefaultRoot = false;
  const defaultRoot = (): KeylessTrust => {
    usesDefaultRoot = true;
    return options.defaultRoot?.trust ?? publicGoodTrust();
  };
  const hash = createHash('sha256').update(text);
  const files = new KeyFiles(src, hash, readKey);
  const keyCache = new Map<string, TrustedKey | undefined>();
  const gpgCache = new Map<string, GpgTrustedKey[] | undefined>();

  const readKeyFile = (node: Node | null, path: string) => files.read(node, path);

  const loadKey = (node: Node | null, where: string): TrustedKey | undefined => {
    const path = src.string(node, where);
    if (path === undefined) return undefined;
    if (keyCache.has(path)) return keyCache.get(path);
    const bytes = readKeyFile(node, path);
    const key = bytes === undefined ? undefined : parsePublicKey(bytes.toString('utf8'), path);
    if (typeof key === 'string')
      src.report(node, `key ${path}: ${key}`, 'cosign keys are PEM public keys (cosign.pub)');
    const ok = typeof key === 'string' ? undefined : key;
    keyCache.set(path, ok);
    return ok;
  };

  const loadGpgKeys = async (node: Node | null, where: string): Promise<GpgTrustedKey[] | undefined> => {
    const path = src.string(node, where);
    if (path === undefined) return undefined;
    if (gpgCache.has(path)) return gpgCache.get(path);
    const bytes = readKeyFile(node, path);
    const keys = bytes === undefined ? undefined : await parseGpgKeyring(bytes, path);
    if (typeof keys === 'string')
      src.report(node, `GPG keyring ${path}: ${keys}`, 'export it with gpg --export [--armor] KEY-ID');
    const ok = typeof keys === 'string' ? undefined : keys;
    gpgCache.set(path, ok);
    return ok;
  };

  const gpgIdentity = (node: Node | null | undefined, where: string): GpgIdentityRule | undefined => {
    if (node === undefined) return { kind: 'matchRepoDigestOrExact' };
    if (src.isScalarValue(node)) {
      const v = src.oneOf(node, where, ['matchRepoDigestOrExact', 'matchRepository', 'matchExact'] as const);
      return v === undefined ? undefined : { kind: v };
    }
    const m = src.map(node, where, ['exactReference', 'exactRepository', 'remapIdentity']);
    if (!m) return undefined;
    if (m.size !== 1)
      return src.report(node, `${where} names exactly one of exactReference, exactRepository or remapIdentity`);
    if (m.has('exactReference')) {
      const text = src.string(m.get('exactReference'), `${where}.exactReference`);
      const ref = text === undefined ? undefined : parseRef(text);
      if (text !== undefined && (!ref || ref.nameOnly))
        return src.report(
          m.get('exactReference'),
          `${where}.exactReference ${JSON.stringify(text)} must be a reference with a tag or digest`,
        );
      return ref ? { kind: 'exactReference', reference: ref.text } : undefined;
    }
    if (m.has('exactRepository')) {
      const text = src.string(m.get('exactRepository'), `${where}.exactRepository`);
      const ref = text === undefined ? undefined : parseRef(text);
      if (text !== undefined && (!ref || !ref.nameOnly))
        return src.report(
          m.get('exactRepository'),
          `${where}.exactRepository ${JSON.stringify(text)} must be a repository without tag or digest`,
        );
      return ref ? { kind: 'exactRepository', repository: ref.name } : undefined;
    }
    const r = src.map(
      m.get('remapIdentity'),
      `${where}.remapIdentity`,
      ['prefix', 'signedPrefix'],
      ['prefix', 'signedPrefix'],
    );
    if (!r) return undefined;
    const prefix = src.string(r.get('prefix'), `${where}.remapIdentity.prefix`);
    const signedPrefix = src.string(r.get('signedPrefix'), `${where}.remapIdentity.signedPrefix`);
    for (const [k, v] of [
      ['prefix', prefix],
      ['signedPrefix', signedPrefix],
    ] as const) {
      if (v !== undefined && !isIdentityPrefix(v))
        return src.report(
          r.get(k),
          `${where}.remapIdentity.${k} ${JSON.stringify(v)} must be host[:port] or host/namespace (fully expanded, no tag or digest)`,
        );
    }
    return prefix === undefined || signedPrefix === undefined
      ? undefined
      : { kind: 'remapIdentity', prefix, signedPrefix };
  };

  const identity = (node: Node | null | undefined, where: string): IdentityRule | undefined => {
    if (node === undefined) return { kind: 'repository' };
    if (src.isScalarValue(node)) {
      const v = src.oneOf(node, where, ['repository', 'any'] as const);
      return v === undefined ? undefined : { kind: v };
    }
    const m = src.map(
      node,
      where,
      ['exact', 'prefix', 'signedPrefix'],
      node !== null && src.isMapWith(node, 'exact') ? [] : ['prefix', 'signedPrefix'],
    );
    if (!m) return undefined;
    if (m.has('exact')) {
      if (m.size !== 1) return src.report(node, `${where}: "exact" stands alone`);
      const repo = src.string(m.get('exact'), `${where}.exact`);
      const ref = repo === undefined ? undefined : parseRef(repo);
      if (repo !== undefined && (!ref || !ref.nameOnly))
        return src.report(
          m.get('exact'),
          `${where}.exact ${JSON.stringify(repo)} must be a repository (host/path, no tag or digest)`,
          'cosign signs a repository name',
        );
      return ref ? { kind: 'exact', repository: ref.name } : undefined;
    }
    const prefix = src.string(m.get('prefix'), `${where}.prefix`);
    const signedPrefix = src.string(m.get('signedPrefix'), `${where}.signedPrefix`);
    for (const [k, v] of [
      ['prefix', prefix],
      ['signedPrefix', signedPrefix],
    ] as const) {
      if (v !== undefined && !isIdentityPrefix(normalizeScope(v)))
        return src.report(
          m.get(k),
          `${where}.${k} ${JSON.stringify(v)} must be host[:port] or host/namespace (no tag or digest)`,
        );
    }
    if (prefix === undefined || signedPrefix === undefined) return undefined;
    return { kind: 'remap', prefix: normalizeScope(prefix), signedPrefix: normalizeScope(signedPrefix) };
  };

  /**
   * `thresholds: { tlog, sct, timestamps }`, each 0 to 8 (timestamps at least 1: a keyless
   * certificate is judged at a verified time, never at the time of the decision).
   */
  const thresholds = (node: Node | null | undefined, where: string): SigstoreThresholds | undefined => {
    const t = src.map(node, where, ['tlog', 'sct', 'timestamps']);
    if (!t) return undefined;
    const out: Record<string, number> = { ...DEFAULT_THRESHOLDS };
    for (const [name, value] of t) {
      const n = src.isScalarValue(value) ? (value as { value: unknown }).value : undefined;
      const least = name === 'timestamps' ? 1 : 0;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < least || n > 8)
        return src.report(value, `${where}.${name} must be a whole number from ${least} to 8`);
      out[name] = n;
      if (n === 0)
        src.warn(
          value,
          `${where}.${name}: 0 accepts signatures ${name === 'sct' ? 'whose certificate no CT log has seen' : 'that no transparency log holds (a bundle may rest on timestamps alone)'}`,
          'leave it at the default of 1 unless the Sigstore instance has no such log',
        );
    }
    return out as unknown as SigstoreThresholds;
  };

  /** `keyless: { issuer | issuerRegExp, subject | subjectRegExp, claims?, trustedRoot?, thresholds? }`. */
  const keylessRule = (node: Node | null | undefined, where: string): KeylessRule | undefined => {
    const k = src.map(node, where, [
      'issuer',
      'issuerRegExp',
      'subject',
      'subjectRegExp',
      'claims',
      'trustedRoot',
      'thresholds',
    ]);
    if (!k) return undefined;
    const matcher = (field: 'issuer' | 'subject'): IdentityMatcher | undefined => {
      const re = `${field}RegExp`;
      if (k.has(field) === k.has(re))
        return src.report(
          node,
          `${where} needs exactly one of ${field} and ${re}`,
          'keyless signers are named by OIDC issuer and certificate subject',
        );
      if (k.has(field)) {
        const v = src.string(k.get(field), `${where}.${field}`);
        return v === undefined ? undefined : { text: JSON.stringify(v), exact: v };
      }
      const v = src.string(k.get(re), `${where}.${re}`);
      if (v === undefined) return undefined;
      const pattern = compileIdentityPattern(v);
      if (typeof pattern === 'string') return src.report(k.get(re), `${where}.${re}: ${pattern}`);
      return { text: `matched by /${v}/`, pattern };
    };
    const issuer = matcher('issuer');
    const subject = matcher('subject');
    let claims: Record<string, IdentityMatcher> | undefined;
    if (k.has('claims')) {
      const names = Object.values(FULCIO_CLAIMS);
      const c = src.map(k.get('claims'), `${where}.claims`, names);
      if (!c) return undefined;
      claims = {};
      for (const [name, value] of c) {
        const w = `${where}.claims.${name}`;
        if (value !== null && src.isMapWith(value, 'regExp')) {
          const r = src.map(value, w, ['regExp'], ['regExp']);
          const text = r ? src.string(r.get('regExp'), `${w}.regExp`) : undefined;
          if (text === undefined) return undefined;
          const pattern = compileIdentityPattern(text);
          if (typeof pattern === 'string') return src.report(r?.get('regExp'), `${w}.regExp: ${pattern}`);
          claims[name] = { text: `matched by /${text}/`, pattern };
        } else {
          const text = src.string(value, w);
          if (text === undefined) return undefined;
          claims[name] = { text: JSON.stringify(text), exact: text };
        }
      }
    }
    let trust: KeylessTrust | undefined;
    if (k.has('trustedRoot')) {
      const path = src.string(k.get('trustedRoot'), `${where}.trustedRoot`);
      const bytes = path === undefined ? undefined : readKeyFile(k.get('trustedRoot') ?? null, path);
      if (path !== undefined && bytes !== undefined) {
        let doc: unknown;
        try {
          doc = JSON.parse(bytes.toString('utf8'));
        } catch (err) {
          return src.report(k.get('trustedRoot'), `trusted root ${path} is not JSON: ${(err as Error).message}`);
        }
        const loaded = loadTrustedRoot(doc, path);
        if (typeof loaded === 'string') return src.report(k.get('trustedRoot'), `trusted root ${path}: ${loaded}`);
        trust = loaded;
      }
      if (trust === undefined) return undefined;
    } else {
      trust = defaultRoot();
    }
    if (k.has('thresholds')) {
      const t = thresholds(k.get('thresholds'), `${where}.thresholds`);
      if (t === undefined) return undefined;
      trust = trust.withThresholds(t);
    }
    return issuer && subject ? { issuer, subject, ...(claims ? { claims } : {}), trust } : undefined;
  };

  /**
   * Members of allOf/atLeast (and a rule's require list) that trust a key in common:
   * one signature by it counts toward one of them only, which is rarely what was meant.
   */
  const warnOverlap = (members: readonly Requirement[], node: Node, where: string): void => {
    const keysOf = (r: Requirement): Map<string, string> => {
      if (r.kind === 'cosign')
        return r.keyless
          ? new Map([
              [`keyless:${r.keyless.issuer.text}\n${r.keyless.subject.text}`, `keyless ${r.keyless.subject.text}`],
            ])
          : new Map(r.keys.map((k) => [`cosign:${k.fingerprint}`, k.source]));
      if (r.kind === 'gpg')
        return new Map(r.keys.map((k) => [`gpg:${k.fingerprint}`, `${k.source} (${k.fingerprint})`]));
      // An attestation's signer counts per predicate type (attestations.ts): it overlaps only another of the same types.
      if (r.kind === 'attestation')
        return new Map(
          r.predicateTypes.flatMap((t) =>
            r.keyless
              ? [
                  [
                    `att:${t}\nkeyless:${r.keyless.issuer.text}\n${r.keyless.subject.text}`,
                    `keyless ${r.keyless.subject.text} (${t})`,
                  ],
                ]
              : r.keys.map((k) => [`att:${t}\ncosign:${k.fingerprint}`, `${k.source} (${t})`]),
          ) as [string, string][],
        );
      // A Notation signer is a signing certificate, known only from the signature.
      if (r.kind === 'notation') return new Map();
      return new Map(r.of.flatMap((c) => [...keysOf(c)]));
    };
    const sets = members.map(keysOf);
    for (let i = 0; i < sets.length; i++) {
      for (let j = i + 1; j < sets.length; j++) {
        const shared = [...(sets[i] as Map<string, string>)].filter(([fp]) => (sets[j] as Map<string, string>).has(fp));
        if (shared.length === 0) continue;
        src.warn(
          node,
          `${where}: members ${i + 1} and ${j + 1} both trust ${shared.map(([, name]) => name).join(', ')}; a signer counts toward one member only, so one signature by it cannot satisfy both`,
          "list each signer's key in one member (k-of-n: one member per signer)",
        );
      }
    }
  };

  const requirementList = async (
    node: Node | null | undefined,
    where: string,
    depth: number,
  ): Promise<Requirement[] | undefined> => {
    const list = src.seq(node, where);
    if (!list) return undefined;
    if (list.length === 0) return src.report(node, `${where} is empty`);
    if (list.length > MAX_KEYS) return src.report(node, `${where} lists more than ${MAX_KEYS} requirements`);
    const out: (Requirement | undefined)[] = [];
    for (const [i, r] of list.entries()) out.push(await requirement(r, `${where}[${i}]`, depth + 1));
    return out.every((r) => r !== undefined) ? (out as Requirement[]) : undefined;
  };

  /** The signers of a cosign or attestation requirement: `keys` or `keyless`, exactly one. */
  const signers = (
    c: Map<string, Node | null>,
    node: Node | null | undefined,
    where: string,
  ): { keys: TrustedKey[]; keyless?: KeylessRule; logTrust?: KeylessTrust } | undefined => {
    if (c.has('keys') === c.has('keyless'))
      return src.report(
        node,
        `${where} needs either keys (key-based signatures) or keyless (Fulcio certificates), not ${c.has('keys') ? 'both' : 'neither'}`,
      );
    if (c.has('keyless')) {
      const keyless = keylessRule(c.get('keyless'), `${where}.keyless`);
      return keyless ? { keys: [], keyless } : undefined;
    }
    const logTrust = defaultRoot();
    const keyNodes = src.seq(c.get('keys'), `${where}.keys`);
    if (!keyNodes) return undefined;
    if (keyNodes.length === 0 || keyNodes.length > MAX_KEYS)
      return src.report(c.get('keys'), `${where}.keys must list 1 to ${MAX_KEYS} keys`);
    const keys = keyNodes.map((k, i) => loadKey(k, `${where}.keys[${i}]`));
    return keys.every((k) => k !== undefined) ? { keys: keys as TrustedKey[], logTrust } : undefined;
  };

  /** `attestation: { predicateType: T | [T…], keys | keyless, conditions: [CEL…], identity }`. */
  const attestationRequirement = (node: Node | null | undefined, where: string): Requirement | undefined => {
    const a = src.map(node, where, ['predicateType', 'keys', 'keyless', 'conditions', 'identity'], ['predicateType']);
    if (!a) return undefined;
    const typeNode = a.get('predicateType');
    const typeNodes =
      typeNode !== null && typeNode !== undefined && src.isScalarValue(typeNode)
        ? [typeNode]
        : src.seq(typeNode, `${where}.predicateType`);
    if (!typeNodes) return undefined;
    if (typeNodes.length === 0 || typeNodes.length > 16)
      return src.report(typeNode, `${where}.predicateType names 1 to 16 predicate types`);
    const predicateTypes: string[] = [];
    for (const [i, t] of typeNodes.entries()) {
      const v = src.string(t, `${where}.predicateType[${i}]`);
      if (v === undefined) return undefined;
      if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(v) || v.length > 512)
        return src.report(
          t,
          `${where}.predicateType ${JSON.stringify(v)} is not a URI`,
          'for example https://slsa.dev/provenance/v1',
        );
      predicateTypes.push(v);
    }
    const who = signers(a, node, where);
    const conditions: Condition[] = [];
    let conditionsOk = true;
    if (a.has('conditions')) {
      const list = src.seq(a.get('conditions'), `${where}.conditions`);
      if (!list) return undefined;
      if (list.length > 32) return src.report(a.get('conditions'), `${where}.conditions lists more than 32 conditions`);
      for (const [i, c] of list.entries()) {
        const text = src.string(c, `${where}.conditions[${i}]`);
        if (text === undefined) {
          conditionsOk = false;
          continue;
        }
        const compiled = compileCondition(text);
        if ('message' in compiled) {
          conditionsOk = false;
          src.reportAt(
            c,
            compiled.at,
            `${where}.conditions[${i}]: ${compiled.message}`,
            'a CEL expression over predicate, predicateType and subject',
          );
        } else conditions.push(compiled);
      }
    }
    const id = identity(a.get('identity'), `${where}.identity`);
    if (!who || id === undefined || !conditionsOk) return undefined;
    return { kind: 'attestation', predicateTypes, ...who, conditions, identity: id };
  };

  const requirement = async (node: Node, where: string, depth = 0): Promise<Requirement | undefined> => {
    const m = src.map(node, where, ['cosign', 'gpg', 'attestation', 'notation', 'allOf', 'anyOf', 'atLeast', 'of']);
    if (!m) return undefined;
    if (depth > 4) return src.report(node, `${where}: requirements nest deeper than 4 levels`);
    if (m.has('atLeast') || m.has('of')) {
      if (!m.has('atLeast') || !m.has('of') || m.size !== 2)
        return src.report(node, `${where}: write atLeast: N together with of: [requirements], and nothing else`);
      const of = await requirementList(m.get('of'), `${where}.of`, depth);
      const count = src.integer(m.get('atLeast'), `${where}.atLeast`, 1, MAX_KEYS);
      if (of && count !== undefined && count > of.length)
        return src.report(
          m.get('atLeast'),
          `${where}.atLeast is ${count} but only ${of.length} requirements are listed`,
        );
      if (of && count !== undefined) warnOverlap(of, m.get('of') ?? node, `${where}.of`);
      return of && count !== undefined ? { kind: 'atLeast', count, of } : undefined;
    }
    if (m.size !== 1)
      return src.report(
        node,
        `${where} must name exactly one signature type or combinator`,
        'cosign, gpg, attestation, notation, allOf, anyOf, or atLeast with of',
      );
    for (const k of ['allOf', 'anyOf'] as const) {
      if (!m.has(k)) continue;
      const of = await requirementList(m.get(k), `${where}.${k}`, depth);
      if (of && k === 'allOf') warnOverlap(of, m.get(k) ?? node, `${where}.${k}`);
      return of ? { kind: k, count: k === 'allOf' ? of.length : 1, of } : undefined;
    }
    if (m.has('gpg')) {
      const g = src.map(m.get('gpg'), `${where}.gpg`, ['keys', 'identity'], ['keys']);
      if (!g) return undefined;
      const keyNodes = src.seq(g.get('keys'), `${where}.gpg.keys`);
      if (!keyNodes) return undefined;
      if (keyNodes.length === 0 || keyNodes.length > MAX_KEYS)
        return src.report(g.get('keys'), `${where}.gpg.keys must list 1 to ${MAX_KEYS} keyring files`);
      const rings: (GpgTrustedKey[] | undefined)[] = [];
      for (const [i, k] of keyNodes.entries()) rings.push(await loadGpgKeys(k, `${where}.gpg.keys[${i}]`));
      const id = gpgIdentity(g.get('identity'), `${where}.gpg.identity`);
      if (rings.some((r) => r === undefined) || id === undefined) return undefined;
      return { kind: 'gpg', keys: (rings as GpgTrustedKey[][]).flat(), identity: id };
    }
    if (m.has('attestation')) return attestationRequirement(m.get('attestation'), `${where}.attestation`);
    if (m.has('notation')) return compileNotationRequirement(src, files, m.get('notation'), `${where}.notation`);
    const c = src.map(m.get('cosign'), `${where}.cosign`, ['keys', 'keyless', 'identity']);
    if (!c) return undefined;
    const who = signers(c, m.get('cosign'), `${where}.cosign`);
    const id = identity(c.get('identity'), `${where}.cosign.identity`);
    if (!who || id === undefined) return undefined;
    return { kind: 'cosign', ...who, identity: id };
  };

  const action = async (m: Map<string, Node | null>, node: Node, where: string): Promise<RuleAction | undefined> => {
    const present = ['require', 'accept', 'reject'].filter((k) => m.has(k));
    if (present.length !== 1) return src.report(node, `${where} needs exactly one of require, accept or reject`);
    if (m.has('accept')) {
      return src.oneOf(m.get('accept'), `${where}.accept`, ['anything'] as const)
        ? { kind: 'accept-anything' }
        : undefined;
    }
    if (m.has('reject')) {
      const v = m.get('reject');
      if (src.isScalarValue(v) && (v as { value: unknown }).value === true)
        return { kind: 'reject', message: undefined };
      const message = src.string(v, `${where}.reject`);
      return message === undefined ? undefined : { kind: 'reject', message };
    }
    const list = src.seq(m.get('require'), `${where}.require`);
    if (!list) return undefined;
    if (list.length === 0)
      return src.report(
        m.get('require'),
        `${where}.require is empty`,
        'an empty requirement list would deny everything; use reject: true to say so',
      );
    const reqs: (Requirement | undefined)[] = [];
    for (const [i, r] of list.entries()) reqs.push(await requirement(r, `${where}.require[${i}]`));
    if (reqs.every((r) => r !== undefined))
      warnOverlap(reqs as Requirement[], m.get('require') ?? node, `${where}.require`);
    return reqs.every((r) => r !== undefined) ? { kind: 'require', requirements: reqs as Requirement[] } : undefined;
  };

  const rules: Rule[] = [];
  let defaultAction: RuleAction = { kind: 'reject', message: 'no rule matches and the default is reject' };
  const revoked = new Map<string, string | undefined>();
  const top =
    src.root === undefined
      ? undefined
      : src.map(src.root, 'the policy', ['version', 'default', 'rules', 'revoked'], ['rules']);
  if (top) {
    for (const [i, r] of (top.has('revoked') ? (src.seq(top.get('revoked'), 'revoked') ?? []) : []).entries()) {
      const where = `revoked[${i}]`;
      const entry = src.isScalarValue(r)
        ? { digest: src.string(r, where), reason: undefined }
        : (() => {
            const e = src.map(r, where, ['digest', 'reason'], ['digest']);
            return {
              digest: e ? src.string(e.get('digest'), `${where}.digest`) : undefined,
              reason: e?.has('reason') ? src.string(e.get('reason'), `${where}.reason`) : undefined,
            };
          })();
      if (entry.digest === undefined) continue;
      try {
        revoked.set(parseDigest(entry.digest).text, entry.reason);
      } catch {
        src.report(
          r,
          `${where}: ${JSON.stringify(entry.digest)} is not a digest`,
          'sha256:<64 hex digits>, as docker inspect or skopeo inspect print it',
        );
      }
    }
    if (top.has('version')) src.integer(top.get('version'), 'version', 1, 1);
    const d = top.has('default')
      ? src.oneOf(top.get('default'), 'default', ['reject', 'accept-anything'] as const)
      : 'reject';
    if (d === 'accept-anything') defaultAction = { kind: 'accept-anything' };
    const list = src.seq(top.get('rules'), 'rules') ?? [];
    if (list.length > MAX_RULES) src.report(top.get('rules'), `at most ${MAX_RULES} rules`);
    const seen = new Map<string, number>();
    for (const [i, ruleNode] of list.slice(0, MAX_RULES).entries()) {
      const where = `rules[${i}]`;
      const m = src.map(ruleNode, where, ['scope', 'require', 'accept', 'reject', 'mode', 'tags', 'index'], ['scope']);
      if (!m) continue;
      const rawScope = src.string(m.get('scope'), `${where}.scope`);
      let scope: string | undefined;
      if (rawScope !== undefined) {
        scope = normalizeScope(rawScope);
        const host = scope.split('/')[0] ?? '';
        const path = scope.includes('/') ? scope.slice(host.length + 1).split('/') : [];
        if (
          !isValidHost(host) ||
          !(host.includes('.') || host.includes(':') || host === 'localhost') ||
          !path.every(isRepositoryComponent)
        ) {
          src.report(
            m.get('scope'),
            `${where}.scope ${JSON.stringify(rawScope)} is not host[/namespace[/repository]]`,
            'a registry host with a dot or a port, then lower-case path components, no tag or digest: registry.example.com/team (Docker Hub images are docker.io/library/alpine)',
          );
          scope = undefined;
        } else if (seen.has(scope)) {
          src.report(m.get('scope'), `${where}.scope ${scope} repeats the scope of rules[${seen.get(scope)}]`);
          scope = undefined;
        } else {
          seen.set(scope, i);
        }
      }
      const act = await action(m, ruleNode, where);
      const mode = m.has('mode')
        ? src.oneOf(m.get('mode'), `${where}.mode`, ['enforce', 'warn', 'audit'] as const)
        : 'enforce';
      const tags = m.has('tags')
        ? src.oneOf(m.get('tags'), `${where}.tags`, ['follow', 'pin', 'require-digest'] as const)
        : 'follow';
      const index = m.has('index')
        ? src.oneOf(m.get('index'), `${where}.index`, ['either', 'signed-index', 'signed-platform'] as const)
        : 'either';
      if (scope !== undefined && act !== undefined && mode && tags && index)
        rules.push({ scope, action: act, mode, tags, index });
    }
  } else if (src.root === null) {
    src.report(null, 'the policy file is empty');
  }
  if (src.diagnostics.length > 0) throw new LoadError('POLICY_INVALID', src.diagnostics);
  if (usesDefaultRoot && options.defaultRoot) hash.update(`\0sigstore trusted root\0${options.defaultRoot.digest}`);
  return Object.freeze({
    source: file,
    format: 'portcullis' as const,
    warnings: src.warnings,
    keyFiles: files.paths(),
    digest: parseDigest(`sha256:${hash.digest('hex')}`),
    defaultAction,
    rules: Object.freeze(rules),
    revoked,
  });
}

/** The embedded default: reject everything. */
export function rejectEverythingPolicy(): Promise<CompiledPolicy> {
  return compilePolicy('(embedded default policy)', 'version: 1\ndefault: reject\nrules: []\n', () => {
    throw new Error('no keys');
  });
}
