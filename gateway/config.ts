import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { isRepositoryComponent, isValidHost, normalizeHost } from '../oci/reference.js';
import { LoadError } from '../policies/errors.js';
import { YamlSource } from '../policies/yaml-source.js';
import { parseMetadataConfig, type MetadataConfig } from './metadata/metadata-config.js';
import { parseStoreConfig, type StoreConfig } from './store/store-config.js';
import type { RetentionRule } from './store/gc.js';
import { secretRef } from './secret-ref.js';
import { parseClientAuth } from './auth/client-auth-config.js';
import type { RateLimitConfig } from './auth/rate-limit.js';
import type { ClientAuthConfig } from './auth/client-auth.js';

/**
 * The gateway's configuration, parsed once and strictly (unknown keys rejected,
 * every problem reported with line and column) into a frozen object. Secrets are
 * never written in the file: credentials name a file or an environment variable.
 */
export interface SecretRef {
  readonly file?: string;
  readonly env?: string;
}

export interface UpstreamConfig {
  /** The registry host as clients name it: `ghcr.io`, `docker.io`, `127.0.0.1:5000`. */
  readonly name: string;
  readonly url: string;
  /** The first path component that selects this upstream: `/v2/<prefix>/<repo>/…`. */
  readonly prefix: string;
  /** Un-prefixed paths (`/v2/library/alpine/…`, Docker Engine's registry-mirrors) go here. */
  readonly dockerHubMirror: boolean;
  readonly username: string | undefined;
  readonly password: SecretRef | undefined;
  readonly authRealms: readonly string[] | undefined;
  /** Origins blobs may be redirected to besides the registry's own and public https. */
  readonly redirectOrigins: readonly string[] | undefined;
  readonly timeouts: {
    readonly headersMs: number;
    readonly idleMs: number;
    readonly totalMs: number;
    readonly minBytesPerSecond: number;
  };
  /** Where GPG simple-signing signatures are published (registries.d `lookaside`): http(s):// or file://. */
  readonly lookaside?: string | undefined;
  /**
   * When the upstream cannot be reached: `fail` (the default), or `serve-verified` — a pull
   * by tag gets the digest last verified for that tag, if it is still admitted now.
   */
  readonly upstreamDown?: 'fail' | 'serve-verified' | undefined;
  /** Consecutive connection failures or time-outs that open the circuit (default 5), and for how long (default 30 s). */
  readonly breaker?: { readonly failures: number; readonly openSeconds: number } | undefined;
}

export interface GatewayConfig {
  readonly source: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly dataDir: string;
  readonly policy: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly tagTtlSeconds: number;
  readonly limits: { readonly maxSignatures: number; readonly maxSignatureBytes: number };
  readonly upstreams: readonly UpstreamConfig[];
  /** The gateway's signing key (PEM, ECDSA P-256, mode 0600); undefined: `<dataDir>/gateway.key`, made on first start. */
  readonly attestationKey: string | undefined;
  /**
   * Keys the gateway signed with before (a rotation): attestations are signed with
   * these too, so clients still pinned to one keep verifying until they re-pin.
   */
  readonly previousAttestationKeys: readonly string[];
  /** An attestation older than this is verified again and re-signed when it is next asked for. */
  readonly renewAfterSeconds: number;
  readonly verifierId: string | undefined;
  /**
   * HTTPS. `clientCa`: clients may sign in with a certificate this CA issued (`portcullis
   * client-cert`), the subject's CN being the user; `clientCerts: required` refuses a
   * TLS connection without one.
   */
  readonly tls:
    | {
        readonly cert: string;
        readonly key: string;
        readonly clientCa?: string | undefined;
        readonly clientCerts?: 'optional' | 'required' | undefined;
      }
    | undefined;
  /** Requests per client (user, else address), per replica (gateway/auth/rate-limit.ts); undefined: no limit. */
  readonly rateLimit?: RateLimitConfig | undefined;
  /** A registries.d directory (containers-registries.d(5)) naming GPG lookasides for upstreams without their own. */
  readonly registriesD?: string | undefined;
  /**
   * The Sigstore trusted root refreshed from a TUF repository (gateway/sigstore-root.ts):
   * the mirror, its initial TUF root (a file; the public-good mirror's ships with
   * @sigstore/tuf), and how often to look for a new trusted_root.json.
   */
  readonly sigstoreTuf?:
    { readonly mirror: string; readonly root?: string | undefined; readonly refreshSeconds: number } | undefined;
  /** Where metadata lives (gateway/metadata/metadata-config.ts); undefined: SQLite under dataDir. */
  readonly metadata?: MetadataConfig | undefined;
  /** Where blobs live (gateway/store/store-config.ts); undefined: files under dataDir/store. */
  readonly store?: StoreConfig | undefined;
  /** What `portcullis gc` retires (gateway/store/gc.ts); undefined: nothing is retired, unused blobs still go. */
  readonly retention?: { readonly graceMinutes: number; readonly rules: readonly RetentionRule[] } | undefined;
  /** Who may pull (gateway/auth/client-auth.ts); undefined: anyone (the default). */
  readonly clientAuth?: ClientAuthConfig | undefined;
}

export const PUBLIC_GOOD_TUF_MIRROR = 'https://tuf-repo-cdn.sigstore.dev';

/** Seven days: well inside secure-run's default --max-age of 30 days. */
export const DEFAULT_RENEW_AFTER_SECONDS = 7 * 86_400;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function defaultConfig(dataDir: string): GatewayConfig {
  return deepFreeze({
    source: '(embedded defaults)',
    listen: { host: '127.0.0.1', port: 5000 },
    dataDir,
    policy: undefined,
    logLevel: 'info',
    tagTtlSeconds: 0,
    limits: { maxSignatures: 16, maxSignatureBytes: 64 * 1024 },
    attestationKey: undefined,
    previousAttestationKeys: [],
    renewAfterSeconds: DEFAULT_RENEW_AFTER_SECONDS,
    verifierId: undefined,
    tls: undefined,
    upstreams: [
      {
        name: 'docker.io',
        url: 'https://registry-1.docker.io',
        prefix: 'docker.io',
        dockerHubMirror: true,
        username: undefined,
        password: undefined,
        authRealms: ['https://auth.docker.io'],
        redirectOrigins: undefined,
        timeouts: { headersMs: 30_000, idleMs: 30_000, totalMs: 60_000, minBytesPerSecond: 1024 },
      },
    ],
  });
}

export function loadConfigFile(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new LoadError(
      'FILE_UNREADABLE',
      [{ file: path, line: 1, column: 1, message: `cannot read config file: ${(cause as Error).message}` }],
      { cause },
    );
  }
  return parseConfig(path, text);
}

export function parseConfig(file: string, text: string): GatewayConfig {
  const src = new YamlSource(file, text);
  const base = dirname(resolve(file));
  const top =
    src.root === undefined
      ? undefined
      : src.map(src.root, 'the config', [
          'listen',
          'dataDir',
          'policy',
          'logLevel',
          'tagTtlSeconds',
          'limits',
          'upstreams',
          'attestation',
          'tls',
          'registriesD',
          'sigstore',
          'metadata',
          'store',
          'retention',
          'clientAuth',
          'rateLimit',
        ]);
  const defaults = defaultConfig(resolve(base, 'data'));
  if (!top)
    throw new LoadError(
      'CONFIG_INVALID',
      src.diagnostics.length
        ? src.diagnostics
        : [{ file, line: 1, column: 1, message: 'the config must be a mapping' }],
    );

  let listen = defaults.listen;
  if (top.has('listen')) {
    const s = src.string(top.get('listen'), 'listen');
    const m = s === undefined ? null : /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(s);
    if (s !== undefined && (!m || Number(m[2]) > 65535))
      src.report(top.get('listen'), 'listen must be HOST:PORT', 'for example 127.0.0.1:5000');
    else if (m) listen = { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  }
  const path = (key: string): string | undefined => {
    if (!top.has(key)) return undefined;
    const s = src.string(top.get(key), key);
    return s === undefined ? undefined : resolve(base, s);
  };
  const dataDir = path('dataDir') ?? defaults.dataDir;
  const policy = path('policy');
  const registriesD = path('registriesD');
  const logLevel = top.has('logLevel') ? (src.oneOf(top.get('logLevel'), 'logLevel', LOG_LEVELS) ?? 'info') : 'info';
  const tagTtlSeconds = top.has('tagTtlSeconds')
    ? (src.integer(top.get('tagTtlSeconds'), 'tagTtlSeconds', 0, 86_400) ?? 0)
    : 0;

  let limits = defaults.limits;
  if (top.has('limits')) {
    const l = src.map(top.get('limits'), 'limits', ['maxSignatures', 'maxSignatureBytes']);
    if (l) {
      limits = {
        maxSignatures: l.has('maxSignatures')
          ? (src.integer(l.get('maxSignatures'), 'limits.maxSignatures', 1, 256) ?? 16)
          : 16,
        maxSignatureBytes: l.has('maxSignatureBytes')
          ? (src.integer(l.get('maxSignatureBytes'), 'limits.maxSignatureBytes', 1024, 4 * 1024 * 1024) ?? 65536)
          : 65536,
      };
    }
  }

  let attestationKey: string | undefined;
  let verifierId: string | undefined;
  const previousAttestationKeys: string[] = [];
  let renewAfterSeconds = DEFAULT_RENEW_AFTER_SECONDS;
  if (top.has('attestation')) {
    const a = src.map(top.get('attestation'), 'attestation', [
      'key',
      'previousKeys',
      'renewAfterSeconds',
      'verifierId',
    ]);
    if (a?.has('key')) {
      const k = src.string(a.get('key'), 'attestation.key');
      if (k !== undefined) attestationKey = resolve(base, k);
    }
    if (a?.has('previousKeys')) {
      const list = src.seq(a.get('previousKeys'), 'attestation.previousKeys') ?? [];
      if (list.length > 4) src.report(a.get('previousKeys'), 'attestation.previousKeys: at most 4 previous keys');
      list.forEach((n, i) => {
        const k = src.string(n, `attestation.previousKeys[${i}]`);
        if (k !== undefined) previousAttestationKeys.push(resolve(base, k));
      });
    }
    if (a?.has('renewAfterSeconds'))
      renewAfterSeconds =
        src.integer(a.get('renewAfterSeconds'), 'attestation.renewAfterSeconds', 1, 365 * 86_400) ??
        DEFAULT_RENEW_AFTER_SECONDS;
    if (a?.has('verifierId')) verifierId = src.string(a.get('verifierId'), 'attestation.verifierId');
  }
  let sigstoreTuf: GatewayConfig['sigstoreTuf'];
  if (top.has('sigstore')) {
    const sg = src.map(top.get('sigstore'), 'sigstore', ['tuf'], ['tuf']);
    const t = sg ? src.map(sg.get('tuf'), 'sigstore.tuf', ['mirror', 'root', 'refreshSeconds'], ['mirror']) : undefined;
    const mirror = t ? src.string(t.get('mirror'), 'sigstore.tuf.mirror') : undefined;
    if (mirror !== undefined && !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(mirror))
      src.report(t?.get('mirror'), `sigstore.tuf.mirror ${JSON.stringify(mirror)} is not an http(s) URL`);
    const root = t?.has('root') ? src.string(t.get('root'), 'sigstore.tuf.root') : undefined;
    if (t && mirror !== undefined && root === undefined && mirror.replace(/\/$/, '') !== PUBLIC_GOOD_TUF_MIRROR)
      src.report(
        t.get('mirror'),
        'sigstore.tuf.root names the TUF root.json to start from',
        `only ${PUBLIC_GOOD_TUF_MIRROR} comes with one`,
      );
    const refreshSeconds = t?.has('refreshSeconds')
      ? (src.integer(t.get('refreshSeconds'), 'sigstore.tuf.refreshSeconds', 1, 30 * 86_400) ?? 86_400)
      : 86_400;
    if (mirror !== undefined)
      sigstoreTuf = {
        mirror: mirror.replace(/\/$/, ''),
        ...(root !== undefined ? { root: resolve(base, root) } : {}),
        refreshSeconds,
      };
  }
  let tls: GatewayConfig['tls'];
  if (top.has('tls')) {
    const t = src.map(top.get('tls'), 'tls', ['cert', 'key', 'clientCa', 'clientCerts'], ['cert', 'key']);
    const cert = t ? src.string(t.get('cert'), 'tls.cert') : undefined;
    const key = t ? src.string(t.get('key'), 'tls.key') : undefined;
    const clientCa = t?.has('clientCa') ? src.string(t.get('clientCa'), 'tls.clientCa') : undefined;
    let clientCerts: 'optional' | 'required' | undefined;
    if (t?.has('clientCerts')) {
      const v = src.string(t.get('clientCerts'), 'tls.clientCerts');
      if (v === 'optional' || v === 'required') clientCerts = v;
      else if (v !== undefined) src.report(t.get('clientCerts'), 'tls.clientCerts is optional or required', 'optional');
      if (clientCa === undefined) src.report(t.get('clientCerts'), 'tls.clientCerts needs tls.clientCa');
    }
    if (cert !== undefined && key !== undefined)
      tls = {
        cert: resolve(base, cert),
        key: resolve(base, key),
        ...(clientCa !== undefined
          ? { clientCa: resolve(base, clientCa), clientCerts: clientCerts ?? 'optional' }
          : {}),
      };
  }
  let rateLimit: RateLimitConfig | undefined;
  if (top.has('rateLimit')) {
    const r = src.map(top.get('rateLimit'), 'rateLimit', ['perSecond', 'burst'], ['perSecond']);
    const perSecond = r ? src.integer(r.get('perSecond'), 'rateLimit.perSecond', 1, 1_000_000) : undefined;
    const burst = r?.has('burst') ? src.integer(r.get('burst'), 'rateLimit.burst', 1, 10_000_000) : undefined;
    if (perSecond !== undefined) rateLimit = { perSecond, burst: burst ?? perSecond * 10 };
  }

  const upstreams: UpstreamConfig[] = [];
  const list = top.has('upstreams') ? (src.seq(top.get('upstreams'), 'upstreams') ?? []) : [];
  list.forEach((node, i) => {
    const u = parseUpstream(src, node, `upstreams[${i}]`, base);
    if (!u) return;
    if (upstreams.some((o) => o.name === u.name))
      src.report(node, `upstreams[${i}]: another upstream is already named ${u.name}`);
    else if (upstreams.some((o) => o.prefix === u.prefix))
      src.report(node, `upstreams[${i}]: prefix ${u.prefix} is already used`);
    else if (u.dockerHubMirror && upstreams.some((o) => o.dockerHubMirror))
      src.report(node, `upstreams[${i}]: only one upstream can mirror docker.io`);
    else upstreams.push(u);
  });
  const metadata = top.has('metadata') ? parseMetadataConfig(src, top.get('metadata'), base) : undefined;
  const store = top.has('store') ? parseStoreConfig(src, top.get('store'), base) : undefined;
  const retention = top.has('retention') ? parseRetention(src, top.get('retention')) : undefined;
  const clientAuth = top.has('clientAuth')
    ? parseClientAuth(src, top.get('clientAuth'), base, tls?.clientCa !== undefined)
    : undefined;
  if (tls?.clientCa !== undefined && !clientAuth)
    src.report(top.get('tls'), 'tls.clientCa signs users in: it needs clientAuth to say what they may pull');
  if (src.diagnostics.length > 0) throw new LoadError('CONFIG_INVALID', src.diagnostics);
  return deepFreeze({
    source: file,
    listen,
    dataDir,
    policy,
    logLevel,
    tagTtlSeconds,
    limits,
    upstreams,
    attestationKey,
    previousAttestationKeys,
    renewAfterSeconds,
    verifierId,
    tls,
    registriesD,
    ...(sigstoreTuf ? { sigstoreTuf } : {}),
    ...(metadata && metadata.driver !== 'sqlite' ? { metadata } : {}),
    ...(store ? { store } : {}),
    ...(retention ? { retention } : {}),
    ...(clientAuth ? { clientAuth } : {}),
    ...(rateLimit ? { rateLimit } : {}),
  });
}

const UNITS: Record<string, number> = { '': 1, B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

/** `1048576`, `512MiB`, `1.5 TiB`: bytes, or undefined (no decimal units: 1 GB would be ambiguous). */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d{1,16}(?:\.\d{1,3})?) ?(B|KiB|MiB|GiB|TiB)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * (UNITS[m[2] ?? ''] ?? Number.NaN));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function parseRetention(
  src: YamlSource,
  node: Node | null | undefined,
): { graceMinutes: number; rules: RetentionRule[] } | undefined {
  const m = src.map(node, 'retention', ['graceMinutes', 'rules']);
  if (!m) return undefined;
  const graceMinutes = m.has('graceMinutes')
    ? (src.integer(m.get('graceMinutes'), 'retention.graceMinutes', 1, 100_000) ?? 60)
    : 60;
  const rules: RetentionRule[] = [];
  for (const [i, r] of (m.has('rules') ? (src.seq(m.get('rules'), 'retention.rules') ?? []) : []).entries()) {
    const where = `retention.rules[${i}]`;
    const rm = src.map(r, where, ['scope', 'unpulledDays', 'maxAgeDays', 'maxBytes']);
    if (!rm) continue;
    const scope = rm.has('scope') ? src.string(rm.get('scope'), `${where}.scope`) : undefined;
    if (scope !== undefined && (scope === '' || scope.endsWith('/') || /\s/.test(scope)))
      src.report(rm.get('scope'), `${where}.scope is not a registry/repository prefix`, 'ghcr.io/team');
    const days = (k: 'unpulledDays' | 'maxAgeDays') =>
      rm.has(k) ? src.integer(rm.get(k), `${where}.${k}`, 1, 100_000) : undefined;
    const unpulledDays = days('unpulledDays');
    const maxAgeDays = days('maxAgeDays');
    let maxBytes: number | undefined;
    if (rm.has('maxBytes')) {
      maxBytes = parseByteSize(
        src.isScalarValue(rm.get('maxBytes')) ? String((rm.get('maxBytes') as { value: unknown }).value) : '',
      );
      if (maxBytes === undefined)
        src.report(
          rm.get('maxBytes'),
          `${where}.maxBytes is a size: bytes, or a number with KiB, MiB, GiB or TiB`,
          '50GiB',
        );
    }
    if (!rm.has('unpulledDays') && !rm.has('maxAgeDays') && !rm.has('maxBytes'))
      src.report(r, `${where} retires nothing: give unpulledDays, maxAgeDays or maxBytes`);
    rules.push({ scope, unpulledDays, maxAgeDays, ...(maxBytes !== undefined ? { maxBytes } : {}) });
  }
  return { graceMinutes, rules };
}

function parseUpstream(src: YamlSource, node: Node, where: string, base: string): UpstreamConfig | undefined {
  const m = src.map(
    node,
    where,
    [
      'name',
      'url',
      'prefix',
      'dockerHubMirror',
      'username',
      'passwordFile',
      'passwordEnv',
      'authRealms',
      'redirectOrigins',
      'timeouts',
      'lookaside',
      'upstreamDown',
      'breaker',
    ],
    ['name', 'url'],
  );
  if (!m) return undefined;
  const rawName = src.string(m.get('name'), `${where}.name`);
  const name = rawName === undefined ? undefined : normalizeHost(rawName);
  if (name !== undefined && !isValidHost(name))
    src.report(
      m.get('name'),
      `${where}.name ${JSON.stringify(rawName)} is not a registry host`,
      'host or host:port, as clients write it',
    );
  const url = src.string(m.get('url'), `${where}.url`);
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (
      !parsed ||
      (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') ||
      parsed.username ||
      parsed.password ||
      (parsed.pathname !== '/' && parsed.pathname !== '')
    ) {
      src.report(m.get('url'), `${where}.url must be an http(s) URL with no path and no credentials`);
    }
  }
  let prefix = m.has('prefix') ? src.string(m.get('prefix'), `${where}.prefix`) : name;
  if (prefix !== undefined && !isRepositoryComponent(prefix)) {
    src.report(
      m.get('prefix') ?? m.get('name'),
      `${where}: ${JSON.stringify(prefix)} cannot be a path prefix (repository names allow no ":" or upper case)`,
      'set prefix: to a lower-case name such as "local"',
    );
    prefix = undefined;
  }
  const dockerHubMirror = m.has('dockerHubMirror')
    ? (src.boolean(m.get('dockerHubMirror'), `${where}.dockerHubMirror`) ?? false)
    : false;
  const username = m.has('username') ? src.string(m.get('username'), `${where}.username`) : undefined;
  const password: SecretRef | undefined = secretRef(src, m, where, 'password', base);
  if ((username === undefined) !== (password === undefined))
    src.report(node, `${where}: username and a password reference go together`);
  const origins = (key: 'authRealms' | 'redirectOrigins'): string[] | undefined => {
    if (!m.has(key)) return undefined;
    const out: string[] = [];
    for (const [j, r] of (src.seq(m.get(key), `${where}.${key}`) ?? []).entries()) {
      const s = src.string(r, `${where}.${key}[${j}]`);
      let url: URL | undefined;
      try {
        url = s === undefined ? undefined : new URL(s);
      } catch {
        url = undefined;
      }
      if (url && (url.protocol === 'https:' || url.protocol === 'http:')) out.push(url.origin);
      else if (s !== undefined) src.report(r, `${where}.${key}[${j}] is not an http(s) URL`);
    }
    return out;
  };
  const authRealms = origins('authRealms');
  const redirectOrigins = origins('redirectOrigins');
  const timeouts = { headersMs: 30_000, idleMs: 30_000, totalMs: 60_000, minBytesPerSecond: 1024 };
  if (m.has('timeouts')) {
    const t = src.map(m.get('timeouts'), `${where}.timeouts`, ['headersMs', 'idleMs', 'totalMs', 'minBytesPerSecond']);
    for (const key of ['headersMs', 'idleMs', 'totalMs', 'minBytesPerSecond'] as const) {
      if (t?.has(key))
        timeouts[key] =
          src.integer(t.get(key), `${where}.timeouts.${key}`, key === 'minBytesPerSecond' ? 0 : 50, 3_600_000) ??
          timeouts[key];
    }
  }
  let lookaside: string | undefined;
  if (m.has('lookaside')) {
    const l = src.string(m.get('lookaside'), `${where}.lookaside`);
    let parsed: URL | undefined;
    try {
      parsed =
        l === undefined
          ? undefined
          : new URL(
              l.startsWith('/')
                ? `file://${l}`
                : l.startsWith('./') || l.startsWith('../')
                  ? `file://${resolve(base, l)}`
                  : l,
            );
    } catch {
      parsed = undefined;
    }
    if (
      parsed &&
      ['http:', 'https:', 'file:'].includes(parsed.protocol) &&
      !parsed.username &&
      !parsed.password &&
      !parsed.search &&
      !parsed.hash
    )
      lookaside = parsed.href.replace(/\/+$/, '');
    else if (l !== undefined)
      src.report(
        m.get('lookaside'),
        `${where}.lookaside must be an http(s):// or file:// URL (or a directory path) without credentials`,
        "as registries.d's lookaside: https://lookaside.example.com",
      );
  }
  const upstreamDown = m.has('upstreamDown')
    ? src.oneOf(m.get('upstreamDown'), `${where}.upstreamDown`, ['fail', 'serve-verified'] as const)
    : undefined;
  let breaker: { failures: number; openSeconds: number } | undefined;
  if (m.has('breaker')) {
    const b = src.map(m.get('breaker'), `${where}.breaker`, ['failures', 'openSeconds']);
    breaker = {
      failures: b?.has('failures') ? (src.integer(b.get('failures'), `${where}.breaker.failures`, 1, 1000) ?? 5) : 5,
      openSeconds: b?.has('openSeconds')
        ? (src.integer(b.get('openSeconds'), `${where}.breaker.openSeconds`, 1, 3600) ?? 30)
        : 30,
    };
  }
  if (name === undefined || url === undefined || prefix === undefined) return undefined;
  return {
    ...(upstreamDown !== undefined ? { upstreamDown } : {}),
    ...(breaker !== undefined ? { breaker } : {}),
    name,
    url: url.replace(/\/$/, ''),
    prefix,
    dockerHubMirror,
    username,
    password,
    authRealms,
    redirectOrigins,
    timeouts,
    lookaside,
  };
}

/** Resolves a secret reference at start-up. The value never enters the config object or a log. */
export function readSecret(ref: SecretRef, env: NodeJS.ProcessEnv): string {
  if (ref.file !== undefined) return readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
  const v = ref.env === undefined ? undefined : env[ref.env];
  if (v === undefined)
    throw new LoadError('CONFIG_INVALID', [
      { file: '(environment)', line: 1, column: 1, message: `environment variable ${ref.env} is not set` },
    ]);
  return v;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
