import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClientAuth } from '../auth/client-auth.js';
import ipaddr from 'ipaddr.js';
import { SignInBusy, USER_NAME } from '../auth/client-auth.js';
import { RateLimiter } from '../auth/rate-limit.js';
import { isRepositoryName, requestedPulls, type TokenClaims, type TokenIssuer } from '../auth/tokens.js';
import { parseRegistryPath } from './registry-path.js';

/**
 * Who is asking, and whether they may ask again so soon: the gateway's client access
 * in front of every registry endpoint. A client proves a user by a certificate from
 * the configured CA (mutual TLS), a bearer token this gateway issued, or basic
 * credentials checked against the htpasswd file; the token endpoint
 * (`/v2/_portcullis/token`, GET as docker and podman ask, POST as containerd does)
 * turns credentials into a token. Requests are limited per user, or per address for a
 * client that proved none. Pull rights themselves are checked by the route, once the
 * repository is known.
 */
export interface ClientAccess {
  readonly auth?: ClientAuth | undefined;
  readonly tokens?: TokenIssuer | undefined;
  /** The token endpoint's absolute URL; undefined: this gateway's own, from the request's Host. */
  readonly realm?: string | undefined;
  readonly limiter?: RateLimiter | undefined;
  /** Whether clients may sign in with a certificate (tls.clientCa). */
  readonly certificates?: boolean;
  readonly https: boolean;
}

export const TOKEN_PATH = '/v2/_portcullis/token';
const PUBLIC = new Set(['/v2/_portcullis/gateway.pub', '/v2/_portcullis/gateway.json']);
const HOST = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/;
const ERR = (code: string, message: string, reason: string) =>
  JSON.stringify({ errors: [{ code, message, detail: { reason } }] });

export interface InstalledClientAccess {
  /** A 401 asking for a token that covers `name` (the client's token names other repositories). */
  insufficientScope(req: FastifyRequest, reply: FastifyReply, name: string): FastifyReply;
}

/**
 * The key a client without a user is counted by: its IPv4 address, or the /64 an IPv6
 * address is in (one host is given a whole /64, and could rotate through it).
 */
export function addressOf(ip: string): string {
  try {
    const a = ipaddr.process(ip);
    if (a.kind() === 'ipv6')
      return `address:${(a.toNormalizedString().split(':').slice(0, 4) as string[]).join(':')}::/64`;
    return `address:${a.toString()}`;
  } catch {
    return `address:${ip}`;
  }
}

/** Password checks per address (bcrypt is slow on purpose), whether or not rateLimit is set. */
const SIGN_INS = { perSecond: 5, burst: 20 };

export function installClientAccess(app: FastifyInstance, access: ClientAccess): InstalledClientAccess {
  const { auth, tokens, limiter } = access;
  const signIns = new RateLimiter(SIGN_INS);
  const installed: InstalledClientAccess = {
    insufficientScope: (req, reply, name) =>
      unauthorized(req, reply, isRepositoryName(name) ? `repository:${name}:pull` : '', 'insufficient_scope'),
  };
  if (!auth && !limiter) return installed;

  const challenge = (req: FastifyRequest, scope?: string, error?: string): string => {
    if (!tokens) return 'Basic realm="portcullis"';
    let realm = access.realm;
    if (realm === undefined) {
      const host = req.headers.host;
      // A Host that is not a plain name: no realm built from it (a client is never sent elsewhere).
      if (typeof host !== 'string' || !HOST.test(host)) return 'Basic realm="portcullis"';
      realm = `${access.https ? 'https' : 'http'}://${host}${TOKEN_PATH}`;
    }
    return (
      `Bearer realm="${realm}",service="${tokens.service}"` +
      (scope ? `,scope="${scope}"` : '') +
      (error ? `,error="${error}"` : '')
    );
  };

  const unauthorized = (req: FastifyRequest, reply: FastifyReply, scope?: string, error?: string) => {
    const path = req.url.split('?', 1)[0] ?? '';
    let p: ReturnType<typeof parseRegistryPath>;
    try {
      p = scope === undefined ? parseRegistryPath(path) : undefined;
    } catch {
      p = undefined; // not a registry path a scope could name
    }
    const named = p && isRepositoryName(p.name) ? p.name : undefined;
    // The token endpoint itself asks for credentials, not for a token.
    const header =
      req.routeOptions.url === TOKEN_PATH
        ? 'Basic realm="portcullis"'
        : challenge(req, scope ?? (named ? `repository:${named}:pull` : undefined), error);
    void reply.header('www-authenticate', header).header('cache-control', 'no-store');
    return reply
      .code(401)
      .header('content-type', 'application/json')
      .send(
        error === 'insufficient_scope'
          ? ERR('UNAUTHORIZED', 'this token does not cover the repository: ask for a new one', 'auth.scope')
          : ERR('UNAUTHORIZED', 'authentication required', 'auth.required'),
      );
  };

  const certificateUser = (req: FastifyRequest): string | undefined => {
    if (!access.certificates) return undefined;
    const socket = req.raw.socket as Partial<TLSSocket>;
    if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
    const cn = socket.getPeerCertificate().subject?.CN;
    const name = Array.isArray(cn) ? undefined : cn;
    return typeof name === 'string' && USER_NAME.test(name) ? name : undefined;
  };

  /** The user a request proves (and the token it proved it with), or why it cannot be told now. */
  const identify = async (
    req: FastifyRequest,
    addressKey: string,
  ): Promise<{ user?: string; token?: TokenClaims; wait?: number }> => {
    const cert = certificateUser(req);
    if (cert !== undefined) return { user: cert };
    const header = req.headers.authorization;
    if (header === undefined || !auth) return {};
    if (/^bearer /i.test(header)) {
      const claims = tokens?.verify(header.slice(7).trim());
      if (!claims || !stillValid(claims)) return {};
      return { user: claims.user, token: claims };
    }
    return password(header, addressKey);
  };

  /** A token's user must still be who it was: the same htpasswd entry (same password), or a certificate user. */
  const stillValid = (c: TokenClaims): boolean =>
    c.entry === 'cert' ? access.certificates === true : auth?.entryOf(c.user) === c.entry;

  /**
   * Basic credentials. A password not checked lately costs a bcrypt check: an address
   * gets a few of those a second, taken before the check (a guesser cannot run ahead of
   * its allowance with requests in parallel).
   */
  const password = async (header: string, addressKey: string): Promise<{ user?: string; wait?: number }> => {
    if (!auth) return {};
    const known = auth.remembered(header);
    if (known !== undefined) return known === null ? {} : { user: known };
    const wait = signIns.take(addressKey);
    if (wait !== undefined) return { wait };
    try {
      const user = await auth.authenticate(header);
      return user === undefined ? {} : { user };
    } catch (err) {
      if (err instanceof SignInBusy) return { wait: 1 };
      throw err;
    }
  };

  const tooMany = (reply: FastifyReply, seconds: number) =>
    reply
      .code(429)
      .header('retry-after', String(seconds))
      .header('content-type', 'application/json')
      .send(ERR('TOOMANYREQUESTS', `too many requests: try again in ${seconds} s`, 'rate.limited'));

  app.addHook('onRequest', async (req, reply) => {
    // Decided by the route the router matched (it decodes the path), never by the raw URL.
    const route = req.routeOptions.url;
    if (route === undefined || !route.startsWith('/v2')) return;
    const addressKey = addressOf(req.ip);
    const who = await identify(req, addressKey);
    if (who.wait !== undefined) return tooMany(reply, who.wait);
    if (limiter) {
      const wait = limiter.take(who.user !== undefined ? `user:${who.user}` : addressKey);
      if (wait !== undefined) return tooMany(reply, wait);
    }
    if (!auth || PUBLIC.has(route)) return;
    if (route === TOKEN_PATH) {
      // Credentials only: a token is not traded for another. A POST may carry them in its body.
      if (who.user !== undefined && !who.token) req.clientUser = who.user;
      else if (req.method !== 'POST' || who.token) return unauthorized(req, reply);
      return;
    }
    if (who.user === undefined) return unauthorized(req, reply);
    req.clientUser = who.user;
    req.clientToken = who.token;
  });

  if (!auth || !tokens) return installed;
  const issue = (req: FastifyRequest, reply: FastifyReply, service: unknown, scopes: string[]) => {
    if (service !== undefined && service !== tokens.service)
      return reply
        .code(400)
        .header('content-type', 'application/json')
        .send(ERR('UNSUPPORTED', `this gateway issues tokens for service "${tokens.service}" only`, 'auth.service'));
    const pulls = requestedPulls(scopes);
    if (pulls === 'invalid')
      return reply
        .code(400)
        .header('content-type', 'application/json')
        .send(ERR('UNSUPPORTED', 'a scope is not repository:NAME:ACTIONS, or there are too many', 'auth.scope'));
    // The token names what was asked for; whether the user may pull it is decided on use, where the
    // repository's upstream is known (a mirror's ?ns= is not part of a token request), and
    // answered alike for what exists and what does not.
    if (req.clientUser === '') return unauthorized(req, reply);
    const entry = auth.entryOf(req.clientUser) ?? 'cert';
    const t = tokens.issue(req.clientUser, entry, pulls);
    void reply.header('cache-control', 'no-store');
    return { token: t.token, access_token: t.token, expires_in: t.expiresIn, issued_at: t.issuedAt };
  };
  app.get(TOKEN_PATH, async (req, reply) => {
    const q = new URLSearchParams(req.url.split('?', 2)[1] ?? '');
    return issue(req, reply, q.get('service') ?? undefined, q.getAll('scope'));
  });
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 16 * 1024 },
    (_req, body, done) => done(null, new URLSearchParams(body as string)),
  );
  // OAuth2's password grant, which containerd tries first (its credentials are in the body, as the user's).
  app.post(TOKEN_PATH, { bodyLimit: 16 * 1024 }, async (req, reply) => {
    if (req.body !== undefined && req.body !== null && !(req.body instanceof URLSearchParams))
      return reply
        .code(415)
        .header('content-type', 'application/json')
        .send(ERR('UNSUPPORTED', 'the token endpoint takes application/x-www-form-urlencoded', 'auth.form'));
    const form = req.body instanceof URLSearchParams ? req.body : new URLSearchParams();
    const grant = form.get('grant_type');
    if (grant === 'password') {
      const user = form.get('username') ?? '';
      const secret = form.get('password') ?? '';
      const proven = await password(`Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`, addressOf(req.ip));
      if (proven.wait !== undefined) return tooMany(reply, proven.wait);
      if (proven.user === undefined) return unauthorized(req, reply);
      req.clientUser = proven.user;
    } else if (grant !== null && grant !== 'client_credentials') {
      // No refresh tokens are issued, so none can be redeemed.
      return reply
        .code(400)
        .header('content-type', 'application/json')
        .send(ERR('UNSUPPORTED', `grant_type ${grant.slice(0, 40)} is not offered`, 'auth.grant'));
    } else if (req.clientUser === '') return unauthorized(req, reply);
    return issue(req, reply, form.get('service') ?? undefined, form.getAll('scope'));
  });
  return installed;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The token a request was authorised with, when it came with one. */
    clientToken: TokenClaims | undefined;
  }
}
