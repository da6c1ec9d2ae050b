/**
 * Requests per client, as token buckets: each client (a user who signed in, else its
 * address) may make `burst` requests at once and `perSecond` a second after that.
 * Buckets live in this process: in a fleet the limit is per replica. The number of
 * clients remembered is bounded; when it is reached, full buckets (clients that have
 * been quiet) are forgotten first, and if every bucket is in use the oldest go.
 */
export interface RateLimitConfig {
  readonly perSecond: number;
  readonly burst: number;
}

const MAX_CLIENTS = 100_000;

export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly config: RateLimitConfig,
    private readonly now: () => number = Date.now,
  ) {}

  #refill(key: string): { tokens: number; at: number } {
    const now = this.now();
    const b = this.#buckets.get(key);
    if (!b) return { tokens: this.config.burst, at: now };
    const tokens = Math.min(this.config.burst, b.tokens + ((now - b.at) / 1000) * this.config.perSecond);
    return { tokens, at: now };
  }

  /** Takes one request for `key`: undefined if allowed, else the seconds until one is. */
  take(key: string): number | undefined {
    const b = this.#refill(key);
    if (b.tokens < 1) {
      this.#buckets.set(key, b);
      return Math.max(1, Math.ceil((1 - b.tokens) / this.config.perSecond));
    }
    b.tokens -= 1;
    this.#buckets.delete(key);
    this.#buckets.set(key, b);
    if (this.#buckets.size > MAX_CLIENTS) this.#forget();
    return undefined;
  }

  #forget(): void {
    for (const [k] of this.#buckets) {
      if (this.#buckets.size <= MAX_CLIENTS * 0.9) return;
      if (this.#refill(k).tokens >= this.config.burst) this.#buckets.delete(k);
    }
    // Map order is least recently used first.
    for (const [k] of this.#buckets) {
      if (this.#buckets.size <= MAX_CLIENTS * 0.9) return;
      this.#buckets.delete(k);
    }
  }
}
