import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { UpstreamError, type RemoteError, type UpstreamErrorCode } from '../errors.js';
import { isObject, parseStrictJson } from '../strict-json.js';
import { parseChallenges } from './challenge.js';
import { checkRealm, checkRedirect, publicOnlyLookup } from './realm.js';
import { discard, dispose, readBounded } from './body.js';
import { trustedCertificates } from './ca.js';
import { parseRemoteError } from './remote-error.js';

export { parseRemoteError } from './remote-error.js';

/**
 * A client for the pull side of one remote registry (distribution-spec, auth per
 * distribution token.md). It authenticates (anonymous or credentialed bearer tokens,
 * basic), retries idempotent requests a bounded number of times, follows redirects
 * to blob storage without credentials, and bounds every body it buffers.
 *
 * It does not trust the registry: it never reads Docker-Content-Digest as a fact;
 * callers hash what they receive.
 */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export interface Timeouts {
  /** Time to connect and receive response headers. */
  readonly headersMs: number;
  /** Longest silence while a body streams. */
  readonly idleMs: number;
  /** Deadline for a whole small (buffered) response: manifests, tokens, lists. */
  readonly totalMs: number;
}

export interface UpstreamObservation {
  readonly method: string;
  readonly status: number;
  readonly ms: number;
}

export interface RegistryClientOptions {
  readonly baseUrl: string;
  readonly credentials?: Credentials | undefined;
  readonly allowedRealmOrigins?: readonly string[] | undefined;
  /** Origins a blob may be redirected to besides the registry's own and public https. */
  readonly allowedRedirectOrigins?: readonly string[] | undefined;
  readonly timeouts?: Partial<Timeouts> | undefined;
  readonly retries?: number | undefined;
  readonly dispatcher?: Dispatcher | undefined;
  readonly observe?: ((o: UpstreamObservation) => void) | undefined;
  readonly now?: (() => number) | undefined;
  /** Sent as `?ns=` on every repository request: the registry host a pull-through proxy should use. */
  readonly namespace?: string | undefined;
  /** CA certificates (PEM) trusted for https; default: Node's, the system store's and NODE_EXTRA_CA_CERTS (see ca.ts). */
  readonly ca?: readonly string[] | undefined;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Readable;
}

export interface BufferedResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bytes: Buffer;
}

/** Per call: `signal` ends the call (the deadline of the client request it serves). */
export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
}

/** What a gateway or registry uses of a client: one can be scoped to a request's deadline. */
export type UpstreamClient = Pick<
  RegistryClient,
  'baseUrl' | 'host' | 'ping' | 'manifest' | 'small' | 'smallBlob' | 'blob' | 'close'
>;

/**
 * A view of `client` whose buffered calls also end with `signal` (one client request's
 * deadline). Blob streams are not bound by it: a fill outlives the request that began it.
 */
export function scopedClient(client: UpstreamClient, signal: AbortSignal): UpstreamClient {
  const bound = (o?: CallOptions): CallOptions => ({
    signal: o?.signal ? AbortSignal.any([o.signal, signal]) : signal,
  });
  return {
    baseUrl: client.baseUrl,
    host: client.host,
    ping: (o) => client.ping(bound(o)),
    manifest: (r, ref, m, a, max, o) => client.manifest(r, ref, m, a, max, bound(o)),
    small: (r, path, a, max, o) => client.small(r, path, a, max, bound(o)),
    smallBlob: (r, d, max, o) => client.smallBlob(r, d, max, bound(o)),
    blob: (r, d, s) => client.blob(r, d, s),
    close: () => client.close(),
  };
}

/** A time limit for one logical request, also ended by `outer`. */
class Budget {
  readonly #ctrl = new AbortController();
  readonly #timer: NodeJS.Timeout;
  readonly #outer: AbortSignal | undefined;
  readonly #onOuter = (): void => this.#ctrl.abort(this.#outer?.reason);
  #expired = false;

  constructor(ms: number, outer: AbortSignal | undefined) {
    this.#outer = outer;
    this.#timer = setTimeout(() => {
      this.#expired = true;
      this.#ctrl.abort(new UpstreamError('UPSTREAM_TIMEOUT', 'time limit reached'));
    }, ms);
    if (outer?.aborted) this.#onOuter();
    else outer?.addEventListener('abort', this.#onOuter, { once: true });
  }

  get signal(): AbortSignal {
    return this.#ctrl.signal;
  }

  get expired(): boolean {
    return this.#expired;
  }

  /** Ends the time limit; `keepOuter` keeps `outer` able to end what is still streaming. */
  release(keepOuter: boolean): void {
    clearTimeout(this.#timer);
    if (!keepOuter) this.#outer?.removeEventListener('abort', this.#onOuter);
  }
}

const MAX_TOKEN_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 3;
const MAX_RETRY_AFTER_MS = 5000;
const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);
const DEFAULT_TIMEOUTS: Timeouts = { headersMs: 30_000, idleMs: 30_000, totalMs: 60_000 };

interface Token {
  readonly value: string;
  readonly expiresAt: number;
}

export class RegistryClient {
  readonly baseUrl: URL;
  readonly #options: RegistryClientOptions;
  readonly #timeouts: Timeouts;
  readonly #dispatcher: Dispatcher;
  /** For targets the configuration does not name: DNS answers must be public addresses. */
  readonly #publicDispatcher: Dispatcher;
  readonly #tokens = new Map<string, Token>();
  readonly #pendingTokens = new Map<string, Promise<Token>>();
  readonly #now: () => number;
  #basic = false;

  constructor(options: RegistryClientOptions) {
    this.baseUrl = new URL(options.baseUrl);
    if (this.baseUrl.protocol !== 'http:' && this.baseUrl.protocol !== 'https:') {
      throw new TypeError(`registry URL must be http or https: ${options.baseUrl}`);
    }
    this.#options = options;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const ca = options.ca ?? trustedCertificates();
    this.#dispatcher =
      options.dispatcher ??
      new Agent({
        connections: 64,
        headersTimeout: this.#timeouts.headersMs,
        bodyTimeout: this.#timeouts.idleMs,
        ...(this.baseUrl.protocol === 'https:' ? { connect: { ca: [...ca] } } : {}),
      });
    // Redirect and realm targets off the registry's origin: public https, so Node's and the system's roots.
    this.#publicDispatcher = new Agent({
      connections: 16,
      connect: { lookup: publicOnlyLookup, ca: [...ca] },
    });
    this.#now = options.now ?? Date.now;
  }

  async close(): Promise<void> {
    if (!this.#options.dispatcher) await this.#dispatcher.close();
    await this.#publicDispatcher.close();
  }

  /** host[:port] of the registry, as errors name it. */
  get host(): string {
    return this.baseUrl.host;
  }

  /** GET /v2/, the registry's base endpoint: its response headers, whatever the status. */
  async ping(opts: CallOptions = {}): Promise<Record<string, string | string[] | undefined>> {
    return this.#within(opts, 'GET /v2/', async (signal) => {
      const res = await this.send('GET', '/v2/', { signal });
      await discard(res.body);
      return res.headers;
    });
  }

  /** GET of a small blob (signature payloads): bounded in size and in total time. */
  async smallBlob(repository: string, digest: string, maxBytes: number, opts: CallOptions = {}): Promise<Buffer> {
    const what = `GET /v2/${repository}/blobs/${digest}`;
    return this.#within(opts, what, async (signal) => {
      const res = await this.send('GET', `/v2/${repository}/blobs/${digest}`, { repository, signal });
      await this.#expectOk(res, [200], what);
      const declared = Number(header(res.headers, 'content-length'));
      if (Number.isFinite(declared) && declared > maxBytes) {
        dispose(res.body);
        throw this.#error('UPSTREAM_BODY_TOO_LARGE', `blob of ${declared} bytes exceeds ${maxBytes}`);
      }
      return this.#bounded(res.body, maxBytes, 'blob');
    });
  }

  /** GET or HEAD a manifest; the body is buffered up to `maxBytes`. 404 gives `undefined`. */
  async manifest(
    repository: string,
    reference: string,
    method: 'GET' | 'HEAD',
    accept: string,
    maxBytes: number,
    opts: CallOptions = {},
  ): Promise<BufferedResponse | undefined> {
    const what = `${method} /v2/${repository}/manifests/${reference}`;
    return this.#within(opts, what, async (signal) => {
      const res = await this.send(method, `/v2/${repository}/manifests/${reference}`, {
        repository,
        headers: { accept },
        signal,
      });
      if (res.status === 404) {
        await discard(res.body);
        return undefined;
      }
      await this.#expectOk(res, [200], what);
      const declared = Number(header(res.headers, 'content-length'));
      if (Number.isFinite(declared) && declared > maxBytes) {
        dispose(res.body);
        throw this.#error('UPSTREAM_BODY_TOO_LARGE', `manifest of ${declared} bytes exceeds ${maxBytes}`);
      }
      const bytes = method === 'HEAD' ? Buffer.alloc(0) : await this.#bounded(res.body, maxBytes, 'manifest');
      if (method === 'HEAD') await discard(res.body);
      return { status: res.status, headers: res.headers, bytes };
    });
  }

  /**
   * Opens a blob for streaming. The caller must consume or destroy `body`. The time
   * limit (retries included) covers the response headers; the body is the caller's
   * to bound (idle and minimum-rate watchdogs), and `signal` ends it.
   */
  async blob(repository: string, digest: string, signal?: AbortSignal): Promise<RawResponse> {
    const what = `GET /v2/${repository}/blobs/${digest}`;
    const budget = new Budget(this.#timeouts.totalMs, signal);
    try {
      const res = await this.send('GET', `/v2/${repository}/blobs/${digest}`, { repository, signal: budget.signal });
      await this.#expectOk(res, [200], what);
      budget.release(true);
      return res;
    } catch (err) {
      budget.release(false);
      throw this.#timeout(err, budget, signal, what);
    }
  }

  /** GET of a small JSON-ish document (tags list, referrers); any status is returned. */
  async small(
    repository: string,
    pathAndQuery: string,
    accept: string | undefined,
    maxBytes: number,
    opts: CallOptions = {},
  ): Promise<BufferedResponse> {
    const what = `GET ${pathAndQuery}`;
    return this.#within(opts, what, async (signal) => {
      const res = await this.send('GET', pathAndQuery, { repository, headers: accept ? { accept } : {}, signal });
      if (res.status >= 500 || res.status === 401 || res.status === 429) await this.#expectOk(res, [200], what);
      const bytes = await this.#bounded(res.body, maxBytes, 'response');
      return { status: res.status, headers: res.headers, bytes };
    });
  }

  /**
   * Runs one logical request within `timeouts.totalMs` (retries, redirects, the token
   * and the buffered body included), and within `opts.signal` (the deadline of the
   * client request it serves).
   */
  async #within<T>(opts: CallOptions, what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const budget = new Budget(this.#timeouts.totalMs, opts.signal);
    try {
      return await work(budget.signal);
    } catch (err) {
      throw this.#timeout(err, budget, opts.signal, what);
    } finally {
      budget.release(false);
    }
  }

  /** The error to report when a request ended: a time limit that ran out wins over what it broke. */
  #timeout(err: unknown, budget: Budget, outer: AbortSignal | undefined, what: string): unknown {
    if (budget.expired) {
      return this.#error('UPSTREAM_TIMEOUT', `did not answer ${what} within ${this.#timeouts.totalMs} ms`, err);
    }
    if (outer?.aborted && !(err instanceof UpstreamError && err.code !== 'UPSTREAM_UNAVAILABLE')) {
      const reason = outer.reason as { name?: string } | undefined;
      return reason?.name === 'TimeoutError'
        ? this.#error('UPSTREAM_TIMEOUT', `had not answered ${what} when the request's time limit ran out`, err)
        : this.#error('UPSTREAM_UNAVAILABLE', `${what} was cancelled`, err);
    }
    return err;
  }

  #error(
    code: UpstreamErrorCode,
    message: string,
    cause?: unknown,
    extra: { status?: number; retryAfterSeconds?: number; remote?: RemoteError } = {},
  ): UpstreamError {
    return new UpstreamError(code, `upstream ${this.host} ${message}`, {
      ...(cause !== undefined ? { cause } : {}),
      ...extra,
      upstream: this.host,
    });
  }

  async #bounded(body: Readable, max: number, what: string): Promise<Buffer> {
    try {
      return await readBounded(body, max, what);
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      throw this.#error('UPSTREAM_UNAVAILABLE', `broke off while sending the ${what} (${causeText(err)})`, err);
    }
  }

  async #expectOk(res: RawResponse, ok: number[], what: string): Promise<void> {
    if (ok.includes(res.status)) return;
    const remote = await remoteError(res.body);
    const status = res.status;
    const said = remote ? `: ${remote.message || remote.code}`.slice(0, 400) : '';
    const extra = { status, ...(remote ? { remote } : {}) };
    if (status === 404) throw this.#error('UPSTREAM_NOT_FOUND', `does not have ${what}${said}`, undefined, extra);
    if (status === 401)
      throw this.#error('UPSTREAM_UNAUTHORIZED', `refused our credentials for ${what}${said}`, undefined, extra);
    if (status === 403) throw this.#error('UPSTREAM_DENIED', `denied ${what}${said}`, undefined, extra);
    if (status === 429) {
      throw this.#error('UPSTREAM_TOO_MANY_REQUESTS', `is rate limiting ${what}${said}`, undefined, {
        ...extra,
        retryAfterSeconds: retryAfter(res.headers),
      });
    }
    if (status >= 500)
      throw this.#error('UPSTREAM_UNAVAILABLE', `answered ${status} to ${what}${said}`, undefined, extra);
    throw this.#error(
      'UPSTREAM_PROTOCOL',
      `answered ${what} with unexpected status ${status}${said}`,
      undefined,
      extra,
    );
  }

  /**
   * Sends one logical request: authentication, bounded retries of idempotent methods
   * on 429/5xx/network errors, and redirects (credentials are dropped when leaving
   * the registry's origin).
   */
  async send(
    method: 'GET' | 'HEAD',
    pathAndQuery: string,
    opts: { repository?: string; headers?: Record<string, string>; signal?: AbortSignal | undefined },
  ): Promise<RawResponse> {
    const retries = this.#options.retries ?? 2;
    let authRetried = false;
    for (let attempt = 0; ; attempt++) {
      let res: RawResponse;
      try {
        res = await this.#follow(method, this.#url(pathAndQuery), opts);
      } catch (err) {
        // A silent upstream stays silent: time-outs are not tried again (the budget would go to waiting).
        if (err instanceof UpstreamError || attempt >= retries || opts.signal?.aborted || isTimeout(err)) {
          throw this.#network(err, `${method} ${pathAndQuery}`);
        }
        await sleep(backoff(attempt), undefined, opts.signal ? { signal: opts.signal } : {});
        continue;
      }
      if (res.status === 401 && !authRetried) {
        authRetried = true;
        const challenges = parseChallenges(res.headers['www-authenticate']);
        await discard(res.body);
        await this.#authenticate(challenges, opts.repository);
        attempt--;
        continue;
      }
      if (RETRYABLE_STATUS.has(res.status) && attempt < retries) {
        const wait = res.status === 429 ? (retryAfter(res.headers) ?? 0) * 1000 : 0;
        if (wait <= MAX_RETRY_AFTER_MS) {
          await discard(res.body);
          await sleep(Math.max(wait, backoff(attempt)), undefined, opts.signal ? { signal: opts.signal } : {});
          continue;
        }
      }
      return res;
    }
  }

  #network(err: unknown, what: string): UpstreamError {
    if (err instanceof UpstreamError) return err;
    if (isTimeout(err))
      return this.#error('UPSTREAM_TIMEOUT', `did not answer ${what} within ${this.#timeouts.headersMs} ms`, err);
    return this.#error('UPSTREAM_UNAVAILABLE', `could not be reached for ${what} (${causeText(err)})`, err);
  }

  #url(pathAndQuery: string): URL {
    const url = new URL(pathAndQuery, this.baseUrl);
    if (this.#options.namespace !== undefined && url.pathname !== '/v2/')
      url.searchParams.set('ns', this.#options.namespace);
    return url;
  }

  async #follow(
    method: string,
    url: URL,
    opts: { repository?: string; headers?: Record<string, string>; signal?: AbortSignal | undefined },
  ): Promise<RawResponse> {
    let current = url;
    let trusted = true;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'portcullis', ...opts.headers };
      if (current.origin === this.baseUrl.origin) {
        const auth = this.#authorization(opts.repository);
        if (auth) headers.authorization = auth;
      }
      const started = this.#now();
      const res = await request(current, {
        method: method as Dispatcher.HttpMethod,
        headers,
        dispatcher: trusted ? this.#dispatcher : this.#publicDispatcher,
        headersTimeout: this.#timeouts.headersMs,
        bodyTimeout: this.#timeouts.idleMs,
        signal: opts.signal,
        // Blobs stream through: larger reads cut per-chunk overhead.
        highWaterMark: 1024 * 1024,
      });
      this.#options.observe?.({ method, status: res.statusCode, ms: this.#now() - started });
      const location = header(res.headers, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && location !== undefined) {
        await discard(res.body);
        if (hop >= MAX_REDIRECTS) throw new UpstreamError('UPSTREAM_REDIRECT_REJECTED', 'too many redirects');
        const next = checkRedirect(location, current, this.baseUrl, this.#options.allowedRedirectOrigins);
        current = next.url;
        trusted = trusted && next.trusted;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body };
    }
  }

  #authorization(repository: string | undefined): string | undefined {
    const token = this.#tokens.get(scopeKey(repository));
    if (token && token.expiresAt > this.#now()) return `Bearer ${token.value}`;
    const creds = this.#options.credentials;
    if (this.#basic && creds) return basicHeader(creds);
    return undefined;
  }

  async #authenticate(challenges: ReturnType<typeof parseChallenges>, repository: string | undefined): Promise<void> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw new UpstreamError('UPSTREAM_PROTOCOL', 'bearer challenge without a realm');
      const key = scopeKey(repository);
      let pending = this.#pendingTokens.get(key);
      if (!pending) {
        pending = this.#fetchToken(realm, bearer.params.service, repository).finally(() =>
          this.#pendingTokens.delete(key),
        );
        this.#pendingTokens.set(key, pending);
      }
      this.#tokens.set(key, await pending);
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (!this.#options.credentials)
        throw new UpstreamError('UPSTREAM_UNAUTHORIZED', 'upstream wants basic credentials and none are configured', {
          status: 401,
        });
      this.#basic = true;
      return;
    }
    throw new UpstreamError('UPSTREAM_UNAUTHORIZED', 'upstream answered 401 without a usable challenge', {
      status: 401,
    });
  }

  async #fetchToken(realm: string, service: string | undefined, repository: string | undefined): Promise<Token> {
    // Credentials go only to the registry's own origin or a configured realm; a public
    // https realm the registry names gets an anonymous token request.
    const { url, trusted } = checkRealm(realm, this.baseUrl, this.#options.allowedRealmOrigins);
    if (service !== undefined) url.searchParams.set('service', service);
    if (repository !== undefined) url.searchParams.append('scope', `repository:${repository}:pull`);
    const headers: Record<string, string> = { 'user-agent': 'portcullis' };
    const creds = this.#options.credentials;
    if (creds && trusted) {
      headers.authorization = basicHeader(creds);
      url.searchParams.set('account', creds.username);
    }
    const started = this.#now();
    const res = await request(url, {
      method: 'GET',
      headers,
      dispatcher: trusted ? this.#dispatcher : this.#publicDispatcher,
      headersTimeout: this.#timeouts.headersMs,
      bodyTimeout: this.#timeouts.idleMs,
      // Shared by every request waiting for this scope's token: bounded on its own.
      signal: AbortSignal.timeout(this.#timeouts.totalMs),
    }).catch((err: unknown) => {
      throw this.#network(err, `GET ${url.origin}${url.pathname} (token)`);
    });
    this.#options.observe?.({ method: 'TOKEN', status: res.statusCode, ms: this.#now() - started });
    if (res.statusCode !== 200) {
      await discard(res.body);
      const code = res.statusCode === 401 || res.statusCode === 403 ? 'UPSTREAM_UNAUTHORIZED' : 'UPSTREAM_UNAVAILABLE';
      throw this.#error(code, `token endpoint ${url.origin} answered ${res.statusCode}`, undefined, {
        status: res.statusCode,
      });
    }
    const bytes = await this.#bounded(res.body, MAX_TOKEN_BYTES, 'token response');
    let doc: unknown;
    try {
      doc = parseStrictJson(bytes, { maxDepth: 8 });
    } catch (cause) {
      throw this.#error('UPSTREAM_PROTOCOL', 'sent a token response that is not valid JSON', cause);
    }
    const value = isObject(doc) ? (doc.token ?? doc.access_token) : undefined;
    if (typeof value !== 'string' || value.length === 0)
      throw this.#error('UPSTREAM_PROTOCOL', 'sent a token response without a token');
    const expiresIn = isObject(doc) && typeof doc.expires_in === 'number' ? Math.max(60, doc.expires_in) : 60;
    return { value, expiresAt: this.#now() + (expiresIn - 5) * 1000 };
  }
}

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function retryAfter(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = header(headers, 'retry-after');
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

function scopeKey(repository: string | undefined): string {
  return repository ?? '';
}

function basicHeader(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

function backoff(attempt: number): number {
  return 100 * 2 ** attempt;
}

function isTimeout(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

/** The short cause of a network failure: `ECONNREFUSED`, `socket hang up`. */
export function causeText(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: unknown } | undefined;
  const inner = e?.cause as { code?: string; message?: string } | undefined;
  return (inner?.code ?? e?.code ?? inner?.message ?? e?.message ?? String(err)).slice(0, 200);
}

/** The first OCI error of an error body (distribution-spec §Error codes), when it has one; bounded. */
async function remoteError(body: Readable): Promise<RemoteError | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readBounded(body, 64 * 1024, 'error body');
  } catch {
    dispose(body);
    return undefined;
  }
  return parseRemoteError(bytes);
}
