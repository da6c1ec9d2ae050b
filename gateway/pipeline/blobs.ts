import type { Readable } from 'node:stream';
import type { Digest } from '../../oci/digest.js';
import { UpstreamError } from '../../oci/errors.js';
import { GatewayError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { FillLeases, MetadataStore } from '../metadata/metadata-store.js';
import type { CompiledPolicy } from '../../policies/model.js';
import { OciError } from '../../oci/errors.js';
import type { BlobStore } from '../store/blob-store.js';
import type { Address } from '../upstreams.js';
import { BlobFill } from './blob-fill.js';

/**
 * The blob half of the pipeline. A blob is served only when an admitted manifest of
 * the same repository references it; its size comes from that manifest's descriptor.
 * Cache hits stream from the store; misses start (or join) the one fill for that
 * digest in that repository of that upstream.
 */
export interface BlobBody {
  readonly size: number;
  /** Present for a range response. */
  readonly range?: { start: number; end: number };
  readonly stream: Readable | undefined;
}

/**
 * Replicas sharing one blob store: a cold blob is fetched by the replica that holds
 * its fill lease; the others wait until it is in the store (or the lease lapses —
 * its holder died — and one of them takes over), and serve it from there.
 */
export interface FleetFills {
  readonly leases: FillLeases;
  /** This gateway among the replicas. */
  readonly holder: string;
  /** A lease lapses this long after it was last renewed (default 10 s); the holder renews it every third of that. */
  readonly ttlMs?: number;
  /** How often a waiting replica looks at the store and the lease (default 200 ms). */
  readonly pollMs?: number;
  /** After this long waiting for another replica, fetch anyway (default 10 min). */
  readonly maxWaitMs?: number;
}

interface Lease {
  attached: boolean;
  release(): Promise<void>;
}

type PeerWait = { readonly stored: true } | { readonly stored: false; readonly lease: Lease | undefined };

export class BlobService {
  readonly #fills = new Map<string, BlobFill>();
  readonly #waits = new Map<string, Promise<PeerWait>>();
  readonly #leases = new Map<string, Lease>();
  #draining = false;

  constructor(
    private readonly store: BlobStore,
    private readonly metadata: MetadataStore,
    private readonly metrics: Metrics,
    private readonly policy: () => CompiledPolicy,
    private readonly fleet?: FleetFills,
  ) {}

  /** Size of a servable blob; throws BLOB_UNKNOWN when no admitted manifest here references it. */
  async size(addr: Address, digest: Digest): Promise<number> {
    return (await this.#servable(addr, digest)).size;
  }

  async #servable(addr: Address, digest: Digest): Promise<{ size: number; attachmentOnly: boolean }> {
    const blob = await this.metadata.admittedBlob(addr.name, digest.text, this.policy().digest.text);
    if (blob === undefined) {
      throw new GatewayError('BLOB_UNKNOWN', `blob ${digest.text} is not part of an admitted image in ${addr.name}`);
    }
    return blob;
  }

  /**
   * With `redirectSeconds`, a servable blob that is in the (object) store is answered
   * with a pre-signed URL instead of its bytes; undefined when it must be served here
   * (not stored yet: the fill verifies it first).
   */
  async redirect(addr: Address, digest: Digest, redirectSeconds: number): Promise<string | undefined> {
    if (!this.store.presignedUrl) return undefined;
    const { size } = await this.#servable(addr, digest);
    if ((await this.store.stat(digest)) !== size) return undefined;
    this.metrics.cache.inc({ kind: 'blob', result: 'hit' });
    return this.store.presignedUrl(digest, redirectSeconds);
  }

  async open(addr: Address, digest: Digest, rangeHeader: string | undefined): Promise<BlobBody> {
    const { size, attachmentOnly } = await this.#servable(addr, digest);
    const range = parseRange(rangeHeader, size);
    const stored = await this.store.stat(digest);
    if (stored === size) {
      this.metrics.cache.inc({ kind: 'blob', result: 'hit' });
      return { size, ...(range ? { range } : {}), stream: await this.store.read(digest, range) };
    }
    // An attachment's blobs were checked and stored with it; they are never fetched on their own.
    if (attachmentOnly) {
      throw new GatewayError('BLOB_UNKNOWN', `blob ${digest.text} of an attachment in ${addr.name} is not stored`);
    }
    this.metrics.cache.inc({ kind: 'blob', result: 'miss' });
    const fill = await this.#fill(addr, digest, size);
    if (fill === 'stored') return { size, ...(range ? { range } : {}), stream: await this.store.read(digest, range) };
    try {
      await fill.started;
    } catch (err) {
      if (err instanceof UpstreamError && err.code === 'UPSTREAM_NOT_FOUND') {
        throw new GatewayError('BLOB_UNKNOWN', `blob ${digest.text} is not known upstream`, { cause: err });
      }
      throw err;
    }
    if (range || !fill.joinable) {
      // A partial request never shapes what is cached: fetch and verify it all first.
      await fill.done;
      return { size, ...(range ? { range } : {}), stream: await this.store.read(digest, range) };
    }
    return { size, stream: fill.follow() };
  }

  async #fill(addr: Address, digest: Digest, size: number): Promise<BlobFill | 'stored'> {
    // Fills are shared only by requests for one repository of one upstream: another
    // upstream's (or repository's) bytes, or stalls, never stand in for these. What is
    // committed is shared by digest, since the store holds only verified bytes.
    const key = `${addr.name}@${digest.text}`;
    // A fill still receiving or committing is followed; a committed one is waited on
    // (open() then reads the store); only a failed one is replaced by a new fetch.
    const current = (f: BlobFill | undefined): BlobFill | undefined => {
      if (!f || !(f.joinable || f.committed)) return undefined;
      if (f.size !== size)
        throw new OciError(
          'SIZE_MISMATCH',
          `descriptors disagree on the size of ${digest.text} (${f.size} and ${size})`,
        );
      return f;
    };
    const existing = current(this.#fills.get(key));
    if (existing) return existing;
    let lease: Lease | undefined;
    if (this.fleet) {
      const waited = await this.#peerFill(key, digest, size, this.fleet);
      if (waited.stored) return 'stored';
      lease = waited.lease;
      const local = current(this.#fills.get(key));
      if (local) {
        if (lease && !lease.attached) await lease.release();
        return local;
      }
    }
    let staged;
    try {
      staged = await this.store.stage();
    } catch (err) {
      if (lease && !lease.attached) await lease.release();
      throw err;
    }
    const again = current(this.#fills.get(key));
    if (again) {
      await staged.abort();
      await staged.close();
      return again;
    }
    const fill = new BlobFill(staged, digest, size, addr.upstream, addr.repository, (n) =>
      this.metrics.bytesFetched.inc(n),
    );
    this.#fills.set(key, fill);
    const forget = (): void => {
      if (this.#fills.get(key) === fill) this.#fills.delete(key);
    };
    fill.done.then(forget, forget);
    if (lease && !lease.attached) {
      lease.attached = true;
      const release = (): void => void lease.release();
      fill.done.then(release, release);
    }
    return fill;
  }

  /**
   * Waits while another replica holds the fill lease for `key`: done when the blob is
   * in the shared store, or when this gateway takes the lease (free, released after a
   * failure, or lapsed because its holder died). Concurrent local requests share one wait.
   */
  #peerFill(key: string, digest: Digest, size: number, fleet: FleetFills): Promise<PeerWait> {
    const known = this.#waits.get(key);
    if (known) return known;
    const ttlMs = fleet.ttlMs ?? 10_000;
    const wait = (async (): Promise<PeerWait> => {
      const deadline = Date.now() + (fleet.maxWaitMs ?? 10 * 60_000);
      for (;;) {
        if ((await this.store.stat(digest)) === size) return { stored: true };
        if (await fleet.leases.acquire(key, fleet.holder, ttlMs)) {
          // The last holder may have committed just before it released the lease.
          if ((await this.store.stat(digest)) === size) {
            await fleet.leases.release(key, fleet.holder);
            return { stored: true };
          }
          return { stored: false, lease: this.#hold(key, fleet, ttlMs) };
        }
        if (Date.now() > deadline) return { stored: false, lease: undefined };
        if (this.#draining)
          throw new GatewayError('SHUTTING_DOWN', `stopped waiting for ${digest.text}: the gateway is stopping`);
        await new Promise((r) => setTimeout(r, fleet.pollMs ?? 200));
      }
    })();
    this.#waits.set(key, wait);
    const forget = (): void => {
      if (this.#waits.get(key) === wait) this.#waits.delete(key);
    };
    wait.then(forget, forget);
    return wait;
  }

  /** The held lease of `key` (one per key), renewed until released or lost. */
  #hold(key: string, fleet: FleetFills, ttlMs: number): Lease {
    const known = this.#leases.get(key);
    if (known) return known;
    let released = false;
    const stop = () => {
      clearInterval(timer);
      if (this.#leases.get(key) === lease) this.#leases.delete(key);
    };
    const timer = setInterval(() => {
      void fleet.leases
        .renew(key, fleet.holder, ttlMs)
        .catch(() => true) // the database may be back at the next tick
        .then((held) => {
          if (!held) stop(); // lapsed and taken by another replica: nothing left to renew
        });
    }, ttlMs / 3);
    timer.unref();
    const lease: Lease = {
      attached: false,
      async release() {
        if (released) return;
        released = true;
        stop();
        await fleet.leases.release(key, fleet.holder).catch(() => undefined);
      },
    };
    this.#leases.set(key, lease);
    return lease;
  }

  /** Shutting down: fills still receiving are stopped (nothing partial is kept), verified ones committed. */
  async drain(): Promise<void> {
    this.#draining = true;
    await Promise.allSettled([...this.#waits.values()]);
    const fills = [...this.#fills.values()];
    for (const f of fills) f.cancel();
    await Promise.allSettled(fills.map((f) => f.done));
  }

  /** Upstream fetches in flight, until each is committed or discarded (for tests and metrics). */
  get fillsInFlight(): number {
    return this.#fills.size;
  }
}

/**
 * One `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14). Several ranges are
 * answered with the whole blob; an unsatisfiable one is RANGE_INVALID (416).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined || !/^\s*bytes=/i.test(header)) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/i.exec(header.trim());
  if (!m) {
    if (/^bytes=.*,/.test(header)) return undefined;
    throw new GatewayError('RANGE_INVALID', 'malformed Range header', { detail: { reason: 'range.invalid', size } });
  }
  const [, a = '', b = ''] = m;
  let start: number;
  let end: number;
  if (a === '' && b === '')
    throw new GatewayError('RANGE_INVALID', 'malformed Range header', { detail: { reason: 'range.invalid', size } });
  if (a === '') {
    const n = Number(b);
    if (n === 0)
      throw new GatewayError('RANGE_INVALID', 'empty suffix range', { detail: { reason: 'range.invalid', size } });
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || end < start)
    throw new GatewayError('RANGE_INVALID', `range not satisfiable for ${size} bytes`, {
      detail: { reason: 'range.invalid', size },
    });
  return { start, end };
}
