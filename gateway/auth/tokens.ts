import { createHmac, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { USER_NAME } from './client-auth.js';

/**
 * Bearer tokens the gateway issues itself (the Docker registry token flow): a client
 * that met `WWW-Authenticate: Bearer realm=…,service=…,scope=…` asks the realm with its
 * user's credentials and gets a short-lived token for the scopes it may pull. Tokens
 * are JWTs signed with HMAC-SHA256 under a key derived from the gateway's signing key,
 * so every replica that shares the key accepts every replica's tokens, and nothing
 * else has to be distributed. A token names its user and the repositories it may
 * pull; the config's pull rights are checked again on every request, so a right taken
 * away stops working at once, not when the token expires.
 */
export interface TokenClaims {
  readonly user: string;
  /** How the user signed in when it was issued: a fingerprint of their htpasswd entry, or `cert`. */
  readonly entry: string;
  /** Repository names (as the client names them) this token may pull. */
  readonly pull: ReadonlySet<string>;
  readonly expiresAt: number;
}

export interface IssuedToken {
  readonly token: string;
  readonly expiresIn: number;
  readonly issuedAt: string;
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
const MAX_TOKEN_BYTES = 8192;
/** Bounds on what a token request may ask for. */
export const MAX_SCOPES = 32;
const MAX_SCOPE_BYTES = 512;
/** How far a token's issue time may lie ahead of this replica's clock (replicas' clocks differ a little). */
const SKEW_MS = 60_000;
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]{1,5})?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

export class TokenIssuer {
  readonly #key: Buffer;

  constructor(
    signingKey: KeyObject,
    readonly service: string,
    readonly lifetimeSeconds: number,
    private readonly now: () => number = Date.now,
  ) {
    const ikm = signingKey.export({ type: 'pkcs8', format: 'der' });
    // The service is part of the key: deployments that share a signing key but not a service share no tokens.
    this.#key = Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), `portcullis client token v1 ${service}`, 32));
  }

  issue(user: string, entry: string, pull: readonly string[]): IssuedToken {
    if (!USER_NAME.test(user)) throw new Error('a token is issued to a user who signed in');
    const now = this.now();
    const iat = Math.floor(now / 1000);
    const payload = {
      iss: 'portcullis',
      sub: user,
      ent: entry,
      aud: this.service,
      iat,
      nbf: iat,
      exp: iat + this.lifetimeSeconds,
      jti: randomBytes(12).toString('base64url'),
      access: pull.map((name) => ({ type: 'repository', name, actions: ['pull'] })),
    };
    const body = `${HEADER}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    return {
      token: `${body}.${this.#mac(body).toString('base64url')}`,
      expiresIn: this.lifetimeSeconds,
      issuedAt: new Date(iat * 1000).toISOString(),
    };
  }

  /** The claims of a token this gateway (or a replica with its key) issued and that is still valid, or undefined. */
  verify(token: string): TokenClaims | undefined {
    if (token.length > MAX_TOKEN_BYTES) return undefined;
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== HEADER) return undefined;
    const body = `${parts[0]}.${parts[1]}`;
    const given = Buffer.from(parts[2] as string, 'base64url');
    const want = this.#mac(body);
    if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
    let p: unknown;
    try {
      p = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof p !== 'object' || p === null) return undefined;
    const c = p as Record<string, unknown>;
    const now = this.now();
    if (typeof c.sub !== 'string' || !USER_NAME.test(c.sub) || typeof c.ent !== 'string') return undefined;
    if (c.aud !== this.service || c.iss !== 'portcullis') return undefined;
    if (typeof c.exp !== 'number' || typeof c.iat !== 'number') return undefined;
    if (c.exp * 1000 <= now || c.iat * 1000 > now + SKEW_MS) return undefined;
    if (!Array.isArray(c.access) || c.access.length > MAX_SCOPES) return undefined;
    const pull = new Set<string>();
    for (const a of c.access as unknown[]) {
      const e = a as { type?: unknown; name?: unknown; actions?: unknown };
      if (
        e.type === 'repository' &&
        typeof e.name === 'string' &&
        Array.isArray(e.actions) &&
        e.actions.includes('pull')
      )
        pull.add(e.name);
    }
    return { user: c.sub, entry: c.ent, pull, expiresAt: c.exp * 1000 };
  }

  #mac(body: string): Buffer {
    return createHmac('sha256', this.#key).update(body).digest();
  }
}

/** Whether `name` is a repository name a scope may carry (lower-case components, an optional port). */
export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_SCOPE_BYTES && NAME.test(name);
}

/**
 * The repositories a token request asks to pull (`scope=repository:NAME:pull[,…]`,
 * several `scope` parameters or several space-separated scopes in one). Other types
 * and actions are ignored, as a token server grants only what it can; a malformed
 * scope is an error.
 */
export function requestedPulls(scopes: readonly string[]): string[] | 'invalid' {
  const out: string[] = [];
  const all = scopes.flatMap((s) => s.split(' ')).filter((s) => s !== '');
  if (all.length > MAX_SCOPES) return 'invalid';
  for (const s of all) {
    if (s.length > MAX_SCOPE_BYTES) return 'invalid';
    const first = s.indexOf(':');
    const last = s.lastIndexOf(':');
    if (first <= 0 || last === first) return 'invalid';
    const type = s.slice(0, first);
    const name = s.slice(first + 1, last);
    const actions = s.slice(last + 1).split(',');
    if (type !== 'repository' && type !== 'repository(plugin)') continue;
    if (!NAME.test(name)) return 'invalid';
    if (actions.includes('pull') || actions.includes('*')) if (!out.includes(name)) out.push(name);
  }
  return out;
}
