import { createHash, type KeyObject } from 'node:crypto';
import type { Node } from 'yaml';
import { parseDigest } from '../oci/digest.js';
import { isRepositoryComponent, isValidHost, normalizeHost } from '../oci/reference.js';
import { OciError } from '../oci/errors.js';
import { parseStrictJson } from '../oci/strict-json.js';
import type { Diagnostic } from './diagnostics.js';
import { LoadError } from './errors.js';
import { KeyFiles } from './key-files.js';
import { parseGpgKeyring } from './gpg-keys.js';
import { parseRef } from './gpg-identity.js';
import { parsePublicKey } from './keys.js';
import type {
  CompiledPolicy,
  GpgIdentityRule,
  GpgTrustedKey,
  Requirement,
  Rule,
  RuleAction,
  SigstoreSignedTrust,
  TrustedKey,
} from './model.js';
import { isIdentityPrefix } from './scope.js';
import { readCertificates } from './verifiers/sigstore-signed.js';
import { YamlSource } from './yaml-source.js';

/**
 * containers-policy.json(5), read as it is — the file podman, skopeo and CRI-O use —
 * and compiled to the same policy the gateway evaluates:
 *
 *   insecureAcceptAnything → accept anything      reject → reject
 *   signedBy (GPGKeys)     → a GPG requirement    sigstoreSigned → a cosign requirement
 *                                                  (keys, fulcio or pki; Rekor keys)
 *
 * with containers/image's signedIdentity rules and its scope order for the `docker`
 * transport (reference with tag or digest, repository, namespaces, host, `*.domain`
 * wildcards, then the transport's "" scope, then `default`). Every requirement in a
 * list must hold. Parsing is strict: unknown or duplicate fields, and everything
 * the gateway does not implement (`keyType`s other than GPGKeys, `signedBaseLayer`),
 * are load errors with line and column.
 * Transports other than `docker` do not apply to a registry and are listed in
 * `notes` (and by `policy lint`), not silently dropped.
 */
export async function compileContainersPolicy(
  file: string,
  text: string,
  readKey: (path: string) => Buffer,
): Promise<CompiledPolicy> {
  // podman reads the file with Go's encoding/json: comments, trailing commas, single
  // quotes and unquoted keys are errors there, so they are here (YAML would take them).
  const strict = strictJsonProblem(file, text);
  if (strict) throw new LoadError('POLICY_INVALID', [strict]);
  const src = new YamlSource(file, text);
  const hash = createHash('sha256').update(text);
  const notes: string[] = [];
  const files = new KeyFiles(src, hash, readKey);
  const readFile = (node: Node | null | undefined, path: string) => files.read(node, path);

  /** keyPath | keyPaths | keyData (| keyDatas): exactly one, as containers/image requires. */
  const keySources = (
    m: Map<string, Node | null>,
    node: Node,
    where: string,
    allowed: readonly string[],
    optional = false,
  ): { where: string; node: Node | null | undefined; bytes: Buffer | undefined }[] | undefined => {
    const present = allowed.filter((k) => m.has(k));
    if (optional && present.length === 0) return [];
    if (present.length !== 1)
      return src.report(node, `${where} needs ${optional ? 'at most' : 'exactly'} one of ${allowed.join(', ')}`);
    const key = present[0] as string;
    const v = m.get(key);
    const one = (n: Node | null | undefined, w: string, isData: boolean) => {
      const s = src.string(n, w);
      if (s === undefined) return { where: w, node: n, bytes: undefined };
      if (!isData) return { where: w, node: n, bytes: readFile(n, s) };
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
        src.report(n, `${w} is not base64`);
        return { where: w, node: n, bytes: undefined };
      }
      const bytes = Buffer.from(s, 'base64');
      hash.update('\0data\0').update(bytes);
      return { where: w, node: n, bytes };
    };
    if (key.endsWith('Paths') || key.endsWith('Datas')) {
      const list = src.seq(v, `${where}.${key}`);
      if (!list) return undefined;
      if (list.length === 0) return src.report(v, `${where}.${key} is empty`);
      return list.map((n, i) => one(n, `${where}.${key}[${i}]`, key.endsWith('Datas')));
    }
    return [one(v, `${where}.${key}`, key.endsWith('Data'))];
  };

  const signedIdentity = (node: Node | null | undefined, where: string): GpgIdentityRule | undefined => {
    if (node === undefined) return { kind: 'matchRepoDigestOrExact' };
    const m = src.map(node, where, ['type', 'dockerReference', 'dockerRepository', 'prefix', 'signedPrefix'], ['type']);
    if (!m) return undefined;
    const type = src.oneOf(m.get('type'), `${where}.type`, [
      'matchExact',
      'matchRepoDigestOrExact',
      'matchRepository',
      'exactReference',
      'exactRepository',
      'remapIdentity',
    ] as const);
    if (type === undefined) return undefined;
    const allowed: Record<typeof type, string[]> = {
      matchExact: [],
      matchRepoDigestOrExact: [],
      matchRepository: [],
      exactReference: ['dockerReference'],
      exactRepository: ['dockerRepository'],
      remapIdentity: ['prefix', 'signedPrefix'],
    };
    for (const k of m.keys()) {
      if (k !== 'type' && !allowed[type].includes(k))
        return src.report(m.get(k), `${where}: "${k}" does not belong to type ${type}`);
    }
    for (const k of allowed[type]) if (!m.has(k)) return src.report(node, `${where}: type ${type} needs "${k}"`);
    if (type === 'exactReference') {
      const t = src.string(m.get('dockerReference'), `${where}.dockerReference`);
      const ref = t === undefined ? undefined : parseRef(t);
      if (t !== undefined && (!ref || ref.nameOnly))
        return src.report(
          m.get('dockerReference'),
          `${where}.dockerReference ${JSON.stringify(t)} must be a reference with a tag or digest`,
        );
      return ref ? { kind: 'exactReference', reference: ref.text } : undefined;
    }
    if (type === 'exactRepository') {
      const t = src.string(m.get('dockerRepository'), `${where}.dockerRepository`);
      const ref = t === undefined ? undefined : parseRef(t);
      if (t !== undefined && !ref)
        return src.report(
          m.get('dockerRepository'),
          `${where}.dockerRepository ${JSON.stringify(t)} is not a repository`,
        );
      return ref ? { kind: 'exactRepository', repository: ref.name } : undefined;
    }
    if (type === 'remapIdentity') {
      const prefix = src.string(m.get('prefix'), `${where}.prefix`);
      const signedPrefix = src.string(m.get('signedPrefix'), `${where}.signedPrefix`);
      for (const [k, v] of [
        ['prefix', prefix],
        ['signedPrefix', signedPrefix],
      ] as const) {
        if (v !== undefined && !isIdentityPrefix(v))
          return src.report(
            m.get(k),
            `${where}.${k} ${JSON.stringify(v)} must be host[:port] or host/namespace, fully expanded`,
          );
      }
      return prefix === undefined || signedPrefix === undefined
        ? undefined
        : { kind: 'remapIdentity', prefix, signedPrefix };
    }
    return { kind: type };
  };

  const requirement = async (
    node: Node,
    where: string,
  ): Promise<{ action?: RuleAction; requirement?: Requirement } | undefined> => {
    const m = src.map(
      node,
      where,
      [
        'type',
        'keyType',
        'keyPath',
        'keyPaths',
        'keyData',
        'keyDatas',
        'signedIdentity',
        'fulcio',
        'pki',
        'rekorPublicKeyPath',
        'rekorPublicKeyPaths',
        'rekorPublicKeyData',
        'rekorPublicKeyDatas',
        'baseLayerIdentity',
      ],
      ['type'],
    );
    if (!m) return undefined;
    const type = src.oneOf(m.get('type'), `${where}.type`, [
      'insecureAcceptAnything',
      'reject',
      'signedBy',
      'sigstoreSigned',
      'signedBaseLayer',
    ] as const);
    if (type === undefined) return undefined;
    const only = (keys: string[]) => {
      for (const k of m.keys())
        if (!keys.includes(k)) src.report(m.get(k), `${where}: "${k}" does not belong to type ${type}`);
    };
    switch (type) {
      case 'insecureAcceptAnything':
        only(['type']);
        return { action: { kind: 'accept-anything' } };
      case 'reject':
        only(['type']);
        return { action: { kind: 'reject', message: `rejected by ${file}` } };
      case 'signedBaseLayer':
        return src.report(
          node,
          `${where}: signedBaseLayer is not supported by this gateway`,
          'it is not implemented by containers/image either',
        );
      case 'signedBy': {
        only(['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity']);
        if (src.oneOf(m.get('keyType'), `${where}.keyType`, ['GPGKeys'] as const) === undefined) {
          if (!m.has('keyType')) src.report(node, `${where}: signedBy needs "keyType": "GPGKeys"`);
          return undefined;
        }
        const sources = keySources(m, node, where, ['keyPath', 'keyPaths', 'keyData']);
        const id = signedIdentity(m.get('signedIdentity'), `${where}.signedIdentity`);
        if (!sources) return undefined;
        const keys: GpgTrustedKey[] = [];
        for (const s of sources) {
          if (!s.bytes) continue;
          const ring = await parseGpgKeyring(s.bytes, s.where);
          if (typeof ring === 'string') src.report(s.node, `${s.where}: ${ring}`);
          else keys.push(...ring);
        }
        if (id === undefined || keys.length === 0 || sources.some((s) => !s.bytes)) return undefined;
        return { requirement: { kind: 'gpg', keys, identity: id } };
      }
      case 'sigstoreSigned': {
        only([
          'type',
          'keyPath',
          'keyPaths',
          'keyData',
          'keyDatas',
          'signedIdentity',
          'fulcio',
          'pki',
          'rekorPublicKeyPath',
          'rekorPublicKeyPaths',
          'rekorPublicKeyData',
          'rekorPublicKeyDatas',
        ]);
        const keyFields = ['keyPath', 'keyPaths', 'keyData', 'keyDatas'];
        const roots = ['keys', 'fulcio', 'pki'].filter((k) =>
          k === 'keys' ? keyFields.some((f) => m.has(f)) : m.has(k),
        );
        if (roots.length !== 1)
          return src.report(
            node,
            `${where} needs exactly one of a public key (keyPath, keyPaths, keyData, keyDatas), fulcio or pki`,
          );
        const id = signedIdentity(m.get('signedIdentity'), `${where}.signedIdentity`);
        const rekorSources = keySources(
          m,
          node,
          where,
          ['rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas'],
          true,
        );
        const rekorKeys: KeyObject[] = [];
        for (const r of rekorSources ?? []) {
          if (!r.bytes) continue;
          const key = parsePublicKey(r.bytes.toString('utf8'), r.where);
          if (typeof key === 'string') src.report(r.node, `${r.where}: ${key}`);
          else if (!key.algorithm.startsWith('ecdsa')) src.report(r.node, `${r.where}: a Rekor public key is ECDSA`);
          else rekorKeys.push(key.key);
        }
        if (!rekorSources || rekorKeys.length !== rekorSources.length) return undefined;
        const rekor = rekorKeys.length > 0 ? { rekorKeys } : {};
        const now = () => new Date();
        /** The PEM certificates of a CA source (a file or data), or undefined (reported). */
        const certsOf = (
          x: { where: string; node: Node | null | undefined; bytes: Buffer | undefined } | undefined,
        ) => {
          if (!x?.bytes) return undefined;
          const c = readCertificates(x.bytes.toString('utf8'));
          if (c === undefined) src.report(x.node, `${x.where} holds no PEM certificates`);
          return c;
        };
        /** A cosign requirement with containers/image's identity rule and this trust. */
        const sigstoreSigned = (
          signedIdentity: GpgIdentityRule,
          trust: SigstoreSignedTrust | undefined,
          keys: TrustedKey[] = [],
        ) => ({
          requirement: {
            kind: 'cosign' as const,
            keys,
            identity: { kind: 'repository' as const },
            signedIdentity,
            ...(trust ? { sigstoreSigned: trust } : {}),
          },
        });
        if (m.has('fulcio')) {
          if (rekorKeys.length === 0)
            return src.report(m.get('fulcio'), `${where}: fulcio needs a Rekor public key (rekorPublicKeyPath…)`);
          const f = src.map(
            m.get('fulcio'),
            `${where}.fulcio`,
            ['caPath', 'caData', 'oidcIssuer', 'subjectEmail'],
            ['oidcIssuer', 'subjectEmail'],
          );
          if (!f) return undefined;
          const ca = keySources(f, m.get('fulcio') as Node, `${where}.fulcio`, ['caPath', 'caData']);
          const certs = certsOf(ca?.[0]);
          const oidcIssuer = src.string(f.get('oidcIssuer'), `${where}.fulcio.oidcIssuer`);
          const subjectEmail = src.string(f.get('subjectEmail'), `${where}.fulcio.subjectEmail`);
          if (!certs || oidcIssuer === undefined || subjectEmail === undefined || id === undefined) return undefined;
          return sigstoreSigned(id, { ...rekor, fulcio: { roots: certs, oidcIssuer, subjectEmail }, now });
        }
        if (m.has('pki')) {
          if (rekorKeys.length > 0) return src.report(node, `${where}: pki cannot be combined with Rekor public keys`);
          const p = src.map(m.get('pki'), `${where}.pki`, [
            'caRootsPath',
            'caRootsData',
            'caIntermediatesPath',
            'caIntermediatesData',
            'subjectEmail',
            'subjectHostname',
          ]);
          if (!p) return undefined;
          const pkiNode = m.get('pki') as Node;
          const rootSrc = keySources(p, pkiNode, `${where}.pki`, ['caRootsPath', 'caRootsData']);
          const midSrc = keySources(p, pkiNode, `${where}.pki`, ['caIntermediatesPath', 'caIntermediatesData'], true);
          const rootCerts = certsOf(rootSrc?.[0]);
          const mids = midSrc && midSrc.length > 0 ? certsOf(midSrc[0]) : [];
          const subjectEmail = p.has('subjectEmail')
            ? src.string(p.get('subjectEmail'), `${where}.pki.subjectEmail`)
            : undefined;
          const subjectHostname = p.has('subjectHostname')
            ? src.string(p.get('subjectHostname'), `${where}.pki.subjectHostname`)
            : undefined;
          if (subjectEmail === undefined && subjectHostname === undefined)
            return src.report(pkiNode, `${where}.pki needs subjectEmail or subjectHostname`);
          if (!rootCerts || !mids || id === undefined) return undefined;
          return sigstoreSigned(id, {
            pki: { roots: rootCerts, intermediates: mids, subjectEmail, subjectHostname },
            now,
          });
        }
        const sources = keySources(m, node, where, keyFields);
        if (!sources) return undefined;
        const keys: TrustedKey[] = [];
        for (const s of sources) {
          if (!s.bytes) continue;
          const key = parsePublicKey(s.bytes.toString('utf8'), s.where);
          if (typeof key === 'string') src.report(s.node, `${s.where}: ${key}`);
          else keys.push(key);
        }
        if (id === undefined || keys.length !== sources.length) return undefined;
        return sigstoreSigned(id, rekorKeys.length > 0 ? { rekorKeys, now } : undefined, keys);
      }
    }
  };

  /** A requirements list: all must hold (containers/image). reject anywhere rejects; accept-anything alone accepts. */
  const requirements = async (node: Node | null | undefined, where: string): Promise<RuleAction | undefined> => {
    const list = src.seq(node, where);
    if (!list) return undefined;
    if (list.length === 0)
      return src.report(
        node,
        `${where} is empty`,
        'containers/image refuses an empty list; use [{"type": "reject"}] to say so',
      );
    const parts: ({ action?: RuleAction; requirement?: Requirement } | undefined)[] = [];
    for (const [i, r] of list.entries()) parts.push(await requirement(r, `${where}[${i}]`));
    if (parts.some((p) => p === undefined)) return undefined;
    const reject = parts.find((p) => p?.action?.kind === 'reject');
    if (reject?.action) return reject.action;
    const reqs = parts.flatMap((p) => (p?.requirement ? [p.requirement] : []));
    return reqs.length === 0 ? { kind: 'accept-anything' } : { kind: 'require', requirements: reqs };
  };

  let defaultAction: RuleAction | undefined;
  const rules: Rule[] = [];
  const top =
    src.root === undefined ? undefined : src.map(src.root, 'the policy', ['default', 'transports'], ['default']);
  if (top) {
    defaultAction = await requirements(top.get('default'), 'default');
    if (top.has('transports')) {
      const transports = src.map(top.get('transports'), 'transports', undefined);
      for (const [name] of transports ?? []) {
        if (name !== 'docker')
          notes.push(`transports.${name} does not apply to a registry gateway (only "docker" does); ignored`);
      }
      const docker = transports?.get('docker');
      if (docker !== undefined) {
        const scopes = src.map(docker, 'transports.docker', undefined);
        for (const [scopeText, node] of scopes ?? []) {
          const where = `transports.docker[${JSON.stringify(scopeText)}]`;
          const host = scopeText.split('/')[0] ?? '';
          if (scopeText !== '' && !scopeText.startsWith('*.') && isValidHost(host) && normalizeHost(host) !== host) {
            src.report(
              node,
              `${where}: ${JSON.stringify(host)} is not how containers/image writes this registry, so podman never matches this scope`,
              `write ${normalizeHost(host)}${scopeText.slice(host.length)}`,
            );
            continue;
          }
          const scope = dockerScope(scopeText);
          if (!scope) {
            src.report(
              node,
              `${where}: ${JSON.stringify(scopeText)} is not a docker scope`,
              'host[:port], host/namespace, host/repo[:tag|@digest], *.domain, or ""',
            );
            continue;
          }
          const action = await requirements(node, where);
          if (action) rules.push({ ...scope, action });
        }
      }
    }
  } else if (src.root === null) {
    src.report(null, 'the policy file is empty');
  }
  if (src.diagnostics.length > 0 || !defaultAction)
    throw new LoadError(
      'POLICY_INVALID',
      src.diagnostics.length ? src.diagnostics : [{ file, line: 1, column: 1, message: 'no usable "default"' }],
    );
  return Object.freeze({
    source: file,
    format: 'containers-policy.json' as const,
    notes,
    keyFiles: files.paths(),
    digest: parseDigest(`sha256:${hash.digest('hex')}`),
    defaultAction,
    rules: Object.freeze(rules),
  });
}

/** A scope of the docker transport (containers-policy.json(5) "docker" section). */
function dockerScope(text: string): Pick<Rule, 'scope' | 'match'> | undefined {
  if (text === '') return { scope: '', match: 'transport-default' };
  if (text.startsWith('*.')) {
    const domain = text.slice(2);
    return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)
      ? { scope: text, match: 'wildcard' }
      : undefined;
  }
  const host = text.split('/')[0] ?? '';
  if (!isValidHost(host)) return undefined;
  const rest = text.slice(host.length + 1);
  const named = `${normalizeHost(host)}${text.length > host.length ? `/${rest}` : ''}`;
  if (!text.includes('/')) return { scope: normalizeHost(host), match: 'prefix' };
  const at = rest.indexOf('@');
  const colon = rest.lastIndexOf(':');
  if (at >= 0 || colon > rest.lastIndexOf('/')) {
    const ref = parseRef(named);
    return ref && !ref.nameOnly && ref.text === named ? { scope: ref.text, match: 'reference' } : undefined;
  }
  return rest.split('/').every(isRepositoryComponent) ? { scope: named, match: 'prefix' } : undefined;
}

/** The first way `text` is not strict JSON (RFC 8259, no duplicate keys), with its line and column. */
export function strictJsonProblem(file: string, text: string): Diagnostic | undefined {
  try {
    parseStrictJson(text, { maxDepth: 64 });
    return undefined;
  } catch (err) {
    if (!(err instanceof OciError)) throw err;
    const fromDetail = err.detail?.offset;
    const fromMessage = /at offset (\d+)/.exec(err.message)?.[1];
    const offset = typeof fromDetail === 'number' ? fromDetail : fromMessage !== undefined ? Number(fromMessage) : 0;
    const before = text.slice(0, offset).split('\n');
    const message = err.message.replace(/^invalid JSON at offset \d+: /, '').replace(/ at offset \d+/, '');
    return {
      file,
      line: before.length,
      column: (before[before.length - 1]?.length ?? 0) + 1,
      message: `not strict JSON: ${message}`,
      hint: 'containers-policy.json is read as JSON, as podman reads it: no comments, trailing commas, single quotes or unquoted keys',
    };
  }
}
