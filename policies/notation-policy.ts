import { createHash, X509Certificate } from 'node:crypto';
import type { Node } from 'yaml';
import { parseDigest } from '../oci/digest.js';
import { isRepositoryComponent, isValidHost } from '../oci/reference.js';
import { LoadError } from './errors.js';
import { KeyFiles } from './key-files.js';
import type {
  CompiledPolicy,
  NotationAction,
  NotationIdentity,
  NotationRequirement,
  NotationTrustStore,
  Rule,
  RuleAction,
} from './model.js';
import { parseDistinguishedName } from './verifiers/x509-names.js';
import { YamlSource } from './yaml-source.js';

/**
 * Notation's trust policy, two ways:
 *
 * - `trustpolicy.oci.json` (or `trustpolicy.json`) taken as it is, with Notation's
 *   trust-store layout beside it: `truststore/x509/{ca,signingAuthority,tsa}/NAME/*`.
 *   Each statement's `registryScopes` become rules for those exact repositories; `*`
 *   is the default; a repository no statement names is refused, as Notation refuses it.
 * - a `notation:` requirement in a portcullis policy, with certificate files:
 *     notation:
 *       trustStores: { ca: [certs/acme-root.pem] }
 *       trustedIdentities: ["x509.subject: C=US, ST=WA, O=acme-rockets.io"]
 *       level: strict              # strict | permissive | audit
 *       override: { revocation: skip }
 *
 * Both are checked as Notation checks them at load: the level and its overrides,
 * identities with at least C, ST and O and none overlapping another, store names.
 */
export const TRUST_STORE_TYPES = ['ca', 'signingAuthority', 'tsa'] as const;
const LEVELS = ['strict', 'permissive', 'audit', 'skip'] as const;
const MAX_STORE_CERTIFICATES = 64;
const MAX_IDENTITIES = 64;
const STORE_NAME = /^[A-Za-z0-9_.-]+$/;

const DEFAULT_CHECKS: Record<NotationRequirement['level'], NotationRequirement['checks']> = {
  strict: { authenticity: 'enforce', authenticTimestamp: 'enforce', expiry: 'enforce', revocation: 'enforce' },
  permissive: { authenticity: 'enforce', authenticTimestamp: 'log', expiry: 'log', revocation: 'log' },
  audit: { authenticity: 'log', authenticTimestamp: 'log', expiry: 'log', revocation: 'log' },
};

/** Regular files directly in `dir` (relative to the policy), sorted, and how many subdirectories it has; or why not. */
export type ListDir = (dir: string) => { files: string[]; subdirectories: number } | string;

/** The shared part: a signatureVerification block, identities, and the trust stores already read. */
export function compileVerification(
  src: YamlSource,
  m: Map<string, Node | null>,
  node: Node,
  where: string,
  levelNode: Node | null | undefined,
  overrideNode: Node | null | undefined,
  verifyTimestampNode: Node | null | undefined,
  trustStores: NotationTrustStore[] | undefined,
  name: string,
  allowSkip: boolean,
): NotationRequirement | 'skip' | undefined {
  const level =
    levelNode === undefined
      ? 'strict'
      : src.oneOf(levelNode, `${where}.level`, allowSkip ? LEVELS : LEVELS.slice(0, 3));
  if (level === undefined) return undefined;
  if (level === 'skip') {
    if (overrideNode !== undefined) return src.report(overrideNode, `${where}: the skip level cannot be overridden`);
    const stores = m.get('trustStores');
    const ids = m.get('trustedIdentities');
    for (const [k, v] of [
      ['trustStores', stores],
      ['trustedIdentities', ids],
    ] as const) {
      if (v !== undefined && !(src.seq(v, `${where}.${k}`)?.length === 0))
        return src.report(v, `${where}.${k} must not be set when the level is skip`);
    }
    return 'skip';
  }
  const checks = { ...DEFAULT_CHECKS[level] };
  if (overrideNode !== undefined) {
    const o = src.map(overrideNode, `${where}.override`, [
      'authenticity',
      'authenticTimestamp',
      'expiry',
      'revocation',
    ]);
    if (!o) return undefined;
    for (const [k, v] of o) {
      const allowed: readonly NotationAction[] = k === 'revocation' ? ['enforce', 'log', 'skip'] : ['enforce', 'log'];
      const a = src.oneOf(v, `${where}.override.${k}`, allowed);
      if (a === undefined) return undefined;
      checks[k as keyof typeof checks] = a;
    }
  }
  const verifyTimestamp =
    verifyTimestampNode === undefined
      ? 'always'
      : src.oneOf(verifyTimestampNode, `${where}.verifyTimestamp`, ['always', 'afterCertExpiry'] as const);
  if (verifyTimestamp === undefined) return undefined;
  const identities = compileIdentities(src, m.get('trustedIdentities'), `${where}.trustedIdentities`, node);
  if (identities === undefined || trustStores === undefined) return undefined;
  if (identities === 'none') return undefined;
  if (trustStores.length === 0) return src.report(node, `${where} needs at least one trust store`);
  // A tsa store holds the roots timestamp authorities chain to: self-signed CA certificates,
  // as Notation requires of it.
  for (const store of trustStores.filter((s) => s.type === 'tsa')) {
    const bad = store.certificates.find((c) => !c.ca || !c.checkIssued(c) || !c.verify(c.publicKey));
    if (bad)
      return src.report(
        m.get('trustStores') ?? node,
        `${where}: trust store tsa:${store.name} holds ${bad.subject.replace(/\n/g, ', ')}, which is not a self-signed CA certificate`,
        'a tsa store holds the root certificates of timestamp authorities',
      );
  }
  if (!trustStores.some((s) => s.type !== 'tsa'))
    return src.report(node, `${where} needs a trust store of type ca or signingAuthority`);
  return {
    kind: 'notation',
    name,
    trustStores,
    identities: identities === 'any' ? undefined : identities,
    level,
    checks,
    verifyTimestamp,
  };
}

/** `notation: { trustStores: { ca: [files…] }, trustedIdentities, level, override }` in a portcullis policy. */
export function compileNotationRequirement(
  src: YamlSource,
  files: KeyFiles,
  node: Node | null | undefined,
  where: string,
): NotationRequirement | undefined {
  const n = src.map(
    node,
    where,
    ['trustStores', 'trustedIdentities', 'level', 'override', 'verifyTimestamp'],
    ['trustStores', 'trustedIdentities'],
  );
  if (!n || !node) return undefined;
  const storeMap = src.map(n.get('trustStores'), `${where}.trustStores`, TRUST_STORE_TYPES);
  const trustStores: NotationTrustStore[] = [];
  let ok = storeMap !== undefined;
  for (const [type, list] of storeMap ?? []) {
    const at = `${where}.trustStores.${type}`;
    const items = src.seq(list, at) ?? [];
    if (items.length === 0) {
      src.report(list, `${at} must list certificate files`);
      ok = false;
    }
    for (const [i, item] of items.entries()) {
      const path = src.string(item, `${at}[${i}]`);
      const bytes = path === undefined ? undefined : files.read(item, path);
      const certs = bytes === undefined ? undefined : readStoreCertificates(bytes);
      if (typeof certs === 'string') src.report(item, `${at}[${i}]: ${path} ${certs}`);
      if (certs === undefined || typeof certs === 'string') ok = false;
      else trustStores.push({ type: type as NotationTrustStore['type'], name: path as string, certificates: certs });
    }
  }
  const r = compileVerification(
    src,
    n,
    node,
    where,
    n.get('level'),
    n.get('override'),
    n.get('verifyTimestamp'),
    ok ? trustStores : undefined,
    'notation',
    false,
  );
  return r === 'skip' ? undefined : r;
}

/** `["*"]`, or `x509.subject: …` names with at least C, ST and O, none overlapping another. */
function compileIdentities(
  src: YamlSource,
  node: Node | null | undefined,
  where: string,
  parent: Node,
): NotationIdentity[] | 'any' | 'none' | undefined {
  if (node === undefined) {
    src.report(parent, `${where} is required`, '["*"] trusts any certificate the trust stores vouch for');
    return 'none';
  }
  const items = src.seq(node, where);
  if (!items) return undefined;
  if (items.length === 0 || items.length > MAX_IDENTITIES)
    return src.report(node, `${where} must list 1 to ${MAX_IDENTITIES} identities`);
  const texts = items.map((n, i) => src.string(n, `${where}[${i}]`));
  if (texts.some((t) => t === undefined)) return undefined;
  if (texts.includes('*')) {
    if (texts.length !== 1) return src.report(node, `${where}: "*" must be the only identity`);
    return 'any';
  }
  const out: NotationIdentity[] = [];
  for (const [i, text] of (texts as string[]).entries()) {
    const at = items[i] as Node;
    const m = /^x509\.subject:\s*(.*)$/s.exec(text);
    if (!m) {
      src.report(at, `${where}[${i}] must start with "x509.subject:"`, 'x509.subject: C=US, ST=WA, O=example.com');
      continue;
    }
    const attributes = parseDistinguishedName(m[1] as string);
    if (typeof attributes === 'string') {
      src.report(at, `${where}[${i}]: ${attributes}`);
      continue;
    }
    const missing = ['C', 'ST', 'O'].filter((k) => !attributes.has(k));
    if (missing.length > 0) {
      src.report(at, `${where}[${i}] must name at least C, ST and O; it lacks ${missing.join(', ')}`);
      continue;
    }
    const overlapping = out.find((o) => subset(o.attributes, attributes) || subset(attributes, o.attributes));
    if (overlapping) {
      src.report(at, `${where}[${i}] overlaps ${JSON.stringify(overlapping.text)}: one certificate could match both`);
      continue;
    }
    out.push({ text, attributes });
  }
  return out.length === texts.length ? out : undefined;
}

function subset(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  return [...a].every(([k, v]) => b.get(k) === v);
}

/** Certificates from one file: PEM (one or more) or a single DER certificate. */
export function readStoreCertificates(bytes: Buffer): X509Certificate[] | string {
  const text = bytes.toString('latin1');
  if (text.includes('-----BEGIN')) {
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g) ?? [];
    const rest = blocks.reduce((t, b) => t.replace(b, ''), text);
    if (blocks.length === 0 || rest.trim() !== '') return 'holds PEM blocks that are not certificates';
    if (blocks.length > MAX_STORE_CERTIFICATES) return `holds more than ${MAX_STORE_CERTIFICATES} certificates`;
    try {
      return blocks.map((b) => new X509Certificate(b));
    } catch {
      return 'holds a certificate that does not parse';
    }
  }
  try {
    return [new X509Certificate(bytes)];
  } catch {
    return 'is not a PEM or DER certificate';
  }
}

/** trustpolicy.oci.json with its trust-store directory: the whole file compiled to a policy. */
export function compileNotationTrustPolicy(
  file: string,
  text: string,
  readFile: (path: string) => Buffer,
  listDir: ListDir,
): CompiledPolicy {
  const src = new YamlSource(file, text);
  const hash = createHash('sha256').update(text);
  const files = new KeyFiles(src, hash, readFile);
  const rules: Rule[] = [];
  let defaultAction: RuleAction = {
    kind: 'reject',
    message: `no trust policy of ${file} applies to this repository, and there is no "*" policy`,
  };
  const top = src.map(src.root, 'the trust policy', ['version', 'trustPolicies'], ['version', 'trustPolicies']);
  const stores = new Map<string, NotationTrustStore | undefined>();
  const store = (node: Node, where: string, ref: string): NotationTrustStore | undefined => {
    const colon = ref.indexOf(':');
    const type = ref.slice(0, colon) as NotationTrustStore['type'];
    const name = ref.slice(colon + 1);
    if (colon < 0 || !(TRUST_STORE_TYPES as readonly string[]).includes(type) || !STORE_NAME.test(name))
      return src.report(
        node,
        `${where}: ${JSON.stringify(ref)} is not TYPE:NAME`,
        'ca:NAME, signingAuthority:NAME or tsa:NAME',
      );
    if (stores.has(ref)) return stores.get(ref);
    const dir = `truststore/x509/${type}/${name}`;
    const listed = listDir(dir);
    let result: NotationTrustStore | undefined;
    if (typeof listed === 'string') src.report(node, `${where}: trust store ${ref}: cannot read ${dir}: ${listed}`);
    else if (listed.files.length === 0)
      src.report(node, `${where}: trust store ${ref} (${dir}) holds no certificate files`);
    else {
      if (listed.subdirectories > 0)
        src.warn(node, `${where}: ${dir} has subdirectories; Notation ignores them and so does the gateway`);
      const certificates: X509Certificate[] = [];
      for (const f of listed.files) {
        const bytes = files.read(node, `${dir}/${f}`);
        if (bytes === undefined) continue;
        const certs = readStoreCertificates(bytes);
        if (typeof certs === 'string') src.report(node, `${where}: ${dir}/${f} ${certs}`);
        else certificates.push(...certs);
      }
      if (certificates.length > MAX_STORE_CERTIFICATES)
        src.report(node, `${where}: trust store ${ref} holds more than ${MAX_STORE_CERTIFICATES} certificates`);
      else result = { type, name, certificates };
    }
    stores.set(ref, result);
    return result;
  };
  if (top) {
    const version = src.string(top.get('version'), 'version');
    if (version !== undefined && version !== '1.0') src.report(top.get('version'), 'version must be "1.0"');
    const statements = src.seq(top.get('trustPolicies'), 'trustPolicies') ?? [];
    if (statements.length === 0 || statements.length > 1000)
      src.report(top.get('trustPolicies') ?? null, 'trustPolicies must list 1 to 1000 statements');
    const names = new Set<string>();
    const scopes = new Set<string>();
    let global = false;
    for (const [i, node] of statements.entries()) {
      const where = `trustPolicies[${i}]`;
      const m = src.map(
        node,
        where,
        ['name', 'registryScopes', 'signatureVerification', 'trustStores', 'trustedIdentities'],
        ['name', 'registryScopes', 'signatureVerification'],
      );
      if (!m) continue;
      const name = src.string(m.get('name'), `${where}.name`);
      if (name !== undefined && names.has(name))
        src.report(m.get('name') ?? node, `${where}.name ${JSON.stringify(name)} is used twice`);
      if (name !== undefined) names.add(name);
      const sv = src.map(
        m.get('signatureVerification'),
        `${where}.signatureVerification`,
        ['level', 'override', 'verifyTimestamp'],
        ['level'],
      );
      const scopeNodes = src.seq(m.get('registryScopes'), `${where}.registryScopes`) ?? [];
      const scopeTexts: string[] = [];
      for (const [j, s] of scopeNodes.entries()) {
        const t = src.string(s, `${where}.registryScopes[${j}]`);
        if (t === undefined) continue;
        if (t === '*') {
          if (scopeNodes.length !== 1)
            src.report(s, `${where}.registryScopes: "*" must be the only scope of its statement`);
          else if (global) src.report(s, `${where}.registryScopes: only one statement may use "*"`);
          global = true;
        } else if (!isRepository(t))
          src.report(
            s,
            `${where}.registryScopes[${j}] ${JSON.stringify(t)} is not a fully qualified repository`,
            'registry.example.com/namespace/repository, without tag or digest',
          );
        else if (scopes.has(t))
          src.report(s, `${where}.registryScopes[${j}] ${JSON.stringify(t)} is in another statement too`);
        scopes.add(t);
        scopeTexts.push(t);
      }
      if (scopeNodes.length === 0)
        src.report(m.get('registryScopes') ?? node, `${where}.registryScopes must list at least one scope`);
      if (!sv || name === undefined) continue;
      const storeNodes =
        m.get('trustStores') === undefined ? [] : (src.seq(m.get('trustStores'), `${where}.trustStores`) ?? []);
      const trustStores: NotationTrustStore[] = [];
      let storesOk = true;
      for (const [j, s] of storeNodes.entries()) {
        const ref = src.string(s, `${where}.trustStores[${j}]`);
        const st = ref === undefined ? undefined : store(s, `${where}.trustStores[${j}]`, ref);
        if (st) trustStores.push(st);
        else storesOk = false;
      }
      const compiled = compileVerification(
        src,
        m,
        node,
        where,
        sv.get('level'),
        sv.get('override'),
        sv.get('verifyTimestamp'),
        storesOk ? trustStores : undefined,
        name,
        true,
      );
      if (compiled === undefined) continue;
      if (compiled === 'skip' && scopeTexts.includes('*'))
        src.report(sv.get('level') ?? node, `${where}: the skip level cannot be used with the "*" scope`);
      const action: RuleAction =
        compiled === 'skip' ? { kind: 'accept-anything' } : { kind: 'require', requirements: [compiled] };
      for (const scope of scopeTexts) {
        if (scope === '*') defaultAction = action;
        else rules.push({ scope, match: 'repository', action });
      }
    }
  }
  if (src.diagnostics.length > 0) throw new LoadError('POLICY_INVALID', src.diagnostics);
  return Object.freeze({
    source: file,
    format: 'trustpolicy.oci.json' as const,
    warnings: src.warnings,
    keyFiles: files.paths(),
    digest: parseDigest(`sha256:${hash.digest('hex')}`),
    defaultAction,
    rules: Object.freeze(rules),
  });
}

function isRepository(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const host = text.slice(0, slash);
  const rest = text.slice(slash + 1);
  return (
    isValidHost(host) && rest.split('/').every(isRepositoryComponent) && !rest.includes(':') && !rest.includes('@')
  );
}
