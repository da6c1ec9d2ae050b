import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { LoadError } from '../../policies/errors.js';

/**
 * Who may pull: HTTP basic authentication against an htpasswd file (bcrypt entries
 * only, as `htpasswd -B` writes them), and pull rights per scope. The most specific
 * `access` scope that names a repository decides; a scope's `users` and `groups` (and
 * `'*'`: any user who signed in) may pull from it; a repository no scope names is
 * refused. Verified credentials are remembered for five minutes (bcrypt is slow on
 * purpose); a refusal reads the same for a repository that exists and one that does
 * not, so a client learns nothing of what it may not pull.
 */
export interface ClientAuthConfig {
  /** Users and their bcrypt hashes; undefined: users sign in by certificate only (tls.clientCa). */
  readonly htpasswd: string | undefined;
  /** The token flow; undefined: basic authentication only (`tokens: false`). */
  readonly tokens: { readonly service: string; readonly expiresSeconds: number; readonly realm?: string } | undefined;
  /** Users may also sign in with a certificate from tls.clientCa (its subject's CN is the user). */
  readonly certificates: boolean;
  readonly groups: Readonly<Record<string, readonly string[]>>;
  readonly access: readonly {
    readonly scope: string;
    readonly users: readonly string[];
    readonly groups: readonly string[];
  }[];
}

const MAX_HTPASSWD_BYTES = 1024 * 1024;
const REMEMBER_MS = 5 * 60 * 1000;
const MAX_REMEMBERED = 10_000;
/** A user name as htpasswd files, certificates (CN) and tokens carry it. */
export const USER_NAME = /^[A-Za-z0-9._@-]{1,128}$/;
const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;
/** bcrypt costs accepted: 4 (htpasswd -B -C 4) to 14 (about 1.5 s a check here: more only stalls pulls). */
const MIN_COST = 4;
const MAX_COST = 14;
/** Password checks run at once (bcryptjs runs on the main thread); more wait, and beyond the queue are refused. */
const CHECKS_AT_ONCE = 2;
const CHECKS_WAITING = 64;

/** Too many password checks are waiting: the request is refused rather than queued without end. */
export class SignInBusy extends Error {}

export class ClientAuth {
  readonly #users: Map<string, string>;
  readonly #remembered = new Map<string, { user: string | undefined; until: number }>();
  /** Checked when the user is unknown, so that a refusal takes as long for one as for the other. */
  readonly #dummy: string;
  #checking = 0;
  readonly #waiting: (() => void)[] = [];

  private constructor(
    users: Map<string, string>,
    private readonly config: ClientAuthConfig,
    private readonly now: () => number,
  ) {
    this.#users = users;
    let cost = MIN_COST;
    for (const h of users.values()) cost = Math.max(cost, Number(BCRYPT.exec(h)?.[1] ?? MIN_COST));
    this.#dummy = bcrypt.hashSync(randomBytes(16).toString('hex'), cost);
  }

  /** Whether `user` is one the htpasswd file lists. */
  knows(user: string): boolean {
    return this.#users.has(user);
  }

  /**
   * A short fingerprint of `user`'s htpasswd entry, put in the tokens it is issued: a
   * changed password (or a user removed) makes them worthless at the next start.
   */
  entryOf(user: string): string | undefined {
    const h = this.#users.get(user);
    return h === undefined ? undefined : createHash('sha256').update(h).digest('base64url').slice(0, 16);
  }

  /** What is remembered of this header: a user, `null` for a refusal, undefined when it must be checked. */
  remembered(header: string): string | null | undefined {
    const known = this.#remembered.get(createHash('sha256').update(header).digest('hex'));
    if (!known || known.until <= this.now()) return undefined;
    return known.user ?? null;
  }

  static load(config: ClientAuthConfig, now: () => number = Date.now): ClientAuth {
    const file = config.htpasswd;
    if (file === undefined) return new ClientAuth(new Map(), config, now);
    const fail = (line: number, message: string): never => {
      throw new LoadError('CONFIG_INVALID', [{ file, line, column: 1, message }]);
    };
    let text = '';
    try {
      if (statSync(file).size > MAX_HTPASSWD_BYTES) fail(1, 'the htpasswd file is larger than 1 MiB');
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (err instanceof LoadError) throw err;
      fail(1, `the htpasswd file cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const users = new Map<string, string>();
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '' || line.startsWith('#')) continue;
      const colon = line.indexOf(':');
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (colon <= 0 || !USER_NAME.test(user)) fail(i + 1, 'not a user:hash line');
      // Never the hash in a message: a weak one (MD5, SHA-1, crypt) is refused by kind.
      const bc = BCRYPT.exec(hash);
      if (!bc) fail(i + 1, `${user}: only bcrypt entries are accepted (htpasswd -B)`);
      const cost = Number(bc?.[1]);
      if (cost < MIN_COST || cost > MAX_COST)
        fail(i + 1, `${user}: bcrypt cost ${cost} is outside ${MIN_COST}-${MAX_COST} (htpasswd -B -C 10)`);
      if (users.has(user)) fail(i + 1, `${user} is listed twice`);
      users.set(user, hash);
    }
    // Certificate users are not listed anywhere: a group may name them.
    if (!config.certificates)
      for (const [group, members] of Object.entries(config.groups))
        for (const m of members)
          if (!users.has(m)) fail(1, `group ${group} names ${m}, who is not in the htpasswd file`);
    return new ClientAuth(users, config, now);
  }

  /** The user an `Authorization: Basic …` header proves, or undefined. */
  async authenticate(header: string | undefined): Promise<string | undefined> {
    if (header === undefined || !/^basic /i.test(header) || header.length > 4096) return undefined;
    const key = createHash('sha256').update(header).digest('hex');
    const now = this.now();
    const known = this.#remembered.get(key);
    if (known && known.until > now) {
      this.#remembered.delete(key);
      this.#remembered.set(key, known);
      return known.user;
    }
    let decoded: string;
    try {
      decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    } catch {
      return undefined;
    }
    const colon = decoded.indexOf(':');
    const user = colon > 0 ? decoded.slice(0, colon) : '';
    const hash = this.#users.get(user);
    const matched = await this.#check(decoded.slice(colon + 1), hash ?? this.#dummy);
    const ok = hash !== undefined && matched;
    // The least recently remembered go first (one client's many headers do not evict everyone).
    this.#remembered.delete(key);
    for (const k of this.#remembered.keys()) {
      if (this.#remembered.size < MAX_REMEMBERED) break;
      this.#remembered.delete(k);
    }
    // Failures are remembered for less long: a password just fixed works soon.
    this.#remembered.set(key, { user: ok ? user : undefined, until: now + (ok ? REMEMBER_MS : 10_000) });
    return ok ? user : undefined;
  }

  async #check(password: string, hash: string): Promise<boolean> {
    if (this.#checking >= CHECKS_AT_ONCE) {
      if (this.#waiting.length >= CHECKS_WAITING) throw new SignInBusy('too many sign-ins are being checked');
      // The slot of a check that ends is handed on to the first that waits.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else this.#checking++;
    try {
      return await bcrypt.compare(password, hash);
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#checking--;
    }
  }

  /** Whether `user` may pull from `name` (`<upstream>/<repository>`). */
  mayPull(user: string, name: string): boolean {
    let best: ClientAuthConfig['access'][number] | undefined;
    for (const a of this.config.access) {
      if (name !== a.scope && !name.startsWith(`${a.scope}/`)) continue;
      if (!best || a.scope.length > best.scope.length) best = a;
    }
    if (!best) return false;
    if (best.users.includes('*') || best.users.includes(user)) return true;
    return best.groups.some((g) => this.config.groups[g]?.includes(user) === true);
  }
}
