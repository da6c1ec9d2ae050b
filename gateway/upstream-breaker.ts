import { UpstreamError } from '../oci/errors.js';
import type { UpstreamClient } from '../oci/registry-client/client.js';

/**
 * A circuit breaker per upstream: after `failures` consecutive calls that found it
 * down (connection failures, time-outs and 5xx answers — not 4xx or bad content,
 * which show a registry at work), calls fail at once with UPSTREAM_UNAVAILABLE for `openSeconds`, so a
 * dead registry does not cost every request its full time-out. Then one call is let
 * through as a trial: an answer closes the circuit, a failure opens it again.
 */
export class CircuitBreaker {
  #failures = 0;
  #openUntil = 0;
  #trial = false;

  constructor(
    private readonly host: string,
    private readonly threshold: number,
    private readonly openMs: number,
    private readonly now: () => number = Date.now,
    private readonly onChange?: (state: 'open' | 'closed', failures: number) => void,
    /** A call the caller ended counts only if the upstream had been silent this long (its headers time-out). */
    private readonly silentMs = 30_000,
  ) {}

  get open(): boolean {
    return this.#failures >= this.threshold && this.now() < this.#openUntil;
  }

  /** `signal`: the caller's own; a call it ends early (a client gone, a request's deadline) says nothing of the upstream. */
  async call<T>(f: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let trial = false;
    if (this.#failures >= this.threshold) {
      const now = this.now();
      if (now < this.#openUntil || this.#trial)
        throw new UpstreamError(
          'UPSTREAM_UNAVAILABLE',
          `${this.host} is not answering (${this.#failures} failures in a row); not tried again for ${Math.max(1, Math.ceil((this.#openUntil - now) / 1000))} s`,
          { upstream: this.host },
        );
      this.#trial = trial = true;
    }
    const started = this.now();
    try {
      const out = await f();
      this.#succeeded();
      return out;
    } catch (err) {
      const down =
        err instanceof UpstreamError && (err.code === 'UPSTREAM_UNAVAILABLE' || err.code === 'UPSTREAM_TIMEOUT');
      if (signal?.aborted === true && this.now() - started < this.silentMs) {
        // ended by the caller before the upstream could be blamed: neither a failure nor an answer
      } else if (down) this.#failed(trial);
      else this.#succeeded(); // an answer, even an error, means the upstream is there
      throw err;
    } finally {
      if (trial) this.#trial = false;
    }
  }

  #succeeded(): void {
    if (this.#failures >= this.threshold) this.onChange?.('closed', this.#failures);
    this.#failures = 0;
  }

  #failed(trial: boolean): void {
    this.#failures++;
    if (this.#failures >= this.threshold) {
      this.#openUntil = this.now() + this.openMs;
      if (this.#failures === this.threshold || trial) this.onChange?.('open', this.#failures);
    }
  }
}

/** `client` with every call through `breaker` (a blob's stream once it has begun is not). */
export function guardedClient(client: UpstreamClient, breaker: CircuitBreaker): UpstreamClient {
  return {
    baseUrl: client.baseUrl,
    host: client.host,
    ping: (o) => breaker.call(() => client.ping(o), o?.signal),
    manifest: (r, ref, m, a, max, o) => breaker.call(() => client.manifest(r, ref, m, a, max, o), o?.signal),
    small: (r, path, a, max, o) => breaker.call(() => client.small(r, path, a, max, o), o?.signal),
    smallBlob: (r, d, max, o) => breaker.call(() => client.smallBlob(r, d, max, o), o?.signal),
    blob: (r, d, s) => breaker.call(() => client.blob(r, d, s), s),
    close: () => client.close(),
  };
}
