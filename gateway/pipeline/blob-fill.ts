import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { Digest } from '../../oci/digest.js';
import { UpstreamError } from '../../oci/errors.js';
import { header } from '../../oci/registry-client/client.js';
import { dispose } from '../../oci/registry-client/body.js';
import type { StagedBlob } from '../store/blob-store.js';
import type { Upstream } from '../upstreams.js';

const CHUNK = 1024 * 1024;
const WRITE_BATCH = 1024 * 1024;
const RETAIN_BYTES = 4 * 1024 * 1024;
/** A batch is written when it holds this many chunks, however small they are (an upstream dribbling bytes). */
const MAX_BATCH_CHUNKS = 256;

/** Bytes [offset, offset + length) of a blob, as the chunks they came in. */
class Batch {
  /** Where each chunk starts, from the batch's start. */
  readonly #starts: number[] = [];

  constructor(
    readonly offset: number,
    readonly chunks: readonly Buffer[],
    readonly length: number,
  ) {
    let at = 0;
    for (const c of chunks) {
      this.#starts.push(at);
      at += c.length;
    }
  }

  /** The bytes from `pos` to the end of the chunk that holds it, short of `limit` (absolute positions). */
  at(pos: number, limit: number): Buffer {
    const rel = pos - this.offset;
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#starts[mid] as number) <= rel) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.chunks[lo] as Buffer;
    const from = rel - (this.#starts[lo] as number);
    return chunk.subarray(from, Math.min(chunk.length, from + (limit - pos)));
  }
}

/**
 * One upstream fetch of one blob into staging, which any number of client responses
 * follow as it grows. The last byte is withheld from followers until the whole blob
 * has been verified (the commit to the store follows), so a digest or length
 * mismatch always ends a response short of its Content-Length: clients and chained
 * caches see a failure, never a clean end (THREATS REG-01). The fill does not depend on any one client:
 * a disconnecting client does not abort it.
 */
export class BlobFill {
  readonly #events = new EventEmitter();
  /** running → verified (all bytes hashed and checked) → done (committed), or failed. */
  #state: 'running' | 'verified' | 'done' | 'failed' = 'running';
  /** Set once every byte has been checked: followers may then finish even if the commit fails. */
  #verified = false;
  #error: unknown;
  #readers = 0;
  /** Bytes received, hashed and published to followers (written to staging or about to be). */
  #received = 0;
  /** The latest batches (the chunks as they came), kept so that followers that keep up never read back from disk. */
  #recent: Batch[] = [];
  readonly done: Promise<void>;
  /** Settles when the upstream has answered: resolved on 200 with a plausible length, else rejected. */
  readonly started: Promise<void>;
  #onStarted: (err?: unknown) => void = () => undefined;
  readonly #controller = new AbortController();

  constructor(
    private readonly staged: StagedBlob,
    readonly digest: Digest,
    readonly size: number,
    upstream: Upstream,
    repository: string,
    onBytes: (n: number) => void,
  ) {
    this.#events.setMaxListeners(0);
    this.started = new Promise((resolve, reject) => {
      this.#onStarted = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.done = this.#run(upstream, repository, onBytes);
    // Observed by whoever awaits them; a failure without followers is not unhandled.
    this.done.catch(() => undefined);
    this.started.catch(() => undefined);
  }

  async #run(upstream: Upstream, repository: string, onBytes: (n: number) => void): Promise<void> {
    const controller = this.#controller;
    const { minBytesPerSecond, idleMs } = upstream.config.timeouts;
    const started = Date.now();
    const grace = Math.max(idleMs, 1000);
    const watchdog = setInterval(() => {
      const elapsed = Date.now() - started;
      if (minBytesPerSecond > 0 && elapsed > grace && this.#received / (elapsed / 1000) < minBytesPerSecond) {
        controller.abort(
          new UpstreamError('UPSTREAM_TIMEOUT', `blob arrives slower than ${minBytesPerSecond} bytes/s`),
        );
      }
    }, 250);
    try {
      const res = await upstream.client.blob(repository, this.digest.text, controller.signal);
      const declared = header(res.headers, 'content-length');
      if (declared !== undefined && Number(declared) !== this.size) {
        dispose(res.body);
        throw new UpstreamError(
          'UPSTREAM_LENGTH_MISMATCH',
          `upstream announces ${declared} bytes for a blob of ${this.size}`,
        );
      }
      this.#onStarted();
      try {
        // Bytes are batched (about 1 MiB) to spare syscalls, published to followers from
        // memory as soon as they are hashed, and written to staging meanwhile.
        let batch: Buffer[] = [];
        let batched = 0;
        // One write may be in flight while the next batch is gathered.
        let inFlight: Promise<void> = Promise.resolve();
        const flush = async (): Promise<void> => {
          if (batched === 0) return;
          // Written together (one writev) and served from as they are: never joined into one copy.
          const chunks = batch;
          const length = batched;
          batch = [];
          batched = 0;
          await inFlight;
          this.#prune();
          inFlight = this.staged.write(chunks);
          inFlight.catch(() => undefined);
          this.#recent.push(new Batch(this.#received, chunks, length));
          this.#received += length;
          onBytes(length);
          this.#events.emit('progress');
        };
        // Read in flowing mode: each chunk as the socket gave it (an async iterator would
        // concatenate what has queued up, copying every byte once more).
        await new Promise<void>((resolve, reject) => {
          const body = res.body;
          let failed = false;
          const fail = (err: unknown) => {
            if (failed) return;
            failed = true;
            body.off('data', onData);
            reject(err);
          };
          const onData = (buf: Buffer) => {
            if (this.#received + batched + buf.length > this.size) {
              fail(
                new UpstreamError(
                  'UPSTREAM_LENGTH_MISMATCH',
                  `upstream sent more than the ${this.size} bytes of ${this.digest.text}`,
                ),
              );
              return;
            }
            batch.push(buf);
            batched += buf.length;
            if (batched < WRITE_BATCH && batch.length < MAX_BATCH_CHUNKS) return;
            body.pause();
            flush().then(() => {
              if (!failed) body.resume();
            }, fail);
          };
          body.on('data', onData);
          body.once('error', fail);
          body.once('end', () => (failed ? undefined : resolve()));
          body.once('close', () => {
            if (!body.readableEnded)
              fail(new UpstreamError('UPSTREAM_UNAVAILABLE', 'the upstream closed the blob body early'));
          });
        });
        await flush();
        await inFlight;
      } catch (err) {
        dispose(res.body);
        throw controller.signal.aborted && controller.signal.reason instanceof UpstreamError
          ? controller.signal.reason
          : err;
      }
      await this.staged.verify(this.digest, this.size);
      // Verified: followers may now finish while the blob is made durable.
      this.#state = 'verified';
      this.#verified = true;
      this.#events.emit('progress');
      await this.staged.commit(this.digest, this.size);
      this.#state = 'done';
      this.#recent = [];
    } catch (err) {
      this.#state = 'failed';
      this.#error = err;
      this.#recent = [];
      this.#onStarted(err);
      await this.staged.abort();
      throw err;
    } finally {
      clearInterval(watchdog);
      this.#events.emit('progress');
      await this.#maybeClose();
    }
  }

  /**
   * Whether a new request may follow this fill: until it is committed. A verified
   * blob is still being made durable and is not in the store yet, so a request in
   * that gap follows the fill rather than fetching the blob a second time.
   */
  get joinable(): boolean {
    return this.#state === 'running' || this.#state === 'verified';
  }

  /** Committed: the blob is in the store (the fill is forgotten a moment later). */
  get committed(): boolean {
    return this.#state === 'done';
  }

  /** Stops a fill that is still receiving (the gateway is shutting down); a verified one is committed. */
  cancel(): void {
    if (this.#state === 'running')
      this.#controller.abort(new UpstreamError('UPSTREAM_UNAVAILABLE', 'the gateway is shutting down'));
  }

  /** A stream of the blob from `start`, following the fill. Must be called synchronously on join. */
  follow(start = 0): Readable {
    this.#readers++;
    const cursor = { pos: start, released: false };
    const stream: Readable = new Readable({
      highWaterMark: CHUNK,
      read: () => void this.#pump(stream, cursor),
      destroy: (err, cb) => {
        if (!cursor.released) {
          cursor.released = true;
          this.#readers--;
          void this.#maybeClose();
        }
        cb(err);
      },
    });
    return stream;
  }

  /** Pushes the next available chunk, waiting for the fill when the follower has caught up. */
  async #pump(stream: Readable, cursor: { pos: number }): Promise<void> {
    try {
      for (;;) {
        // A commit that fails after verification leaves the staged bytes readable and right.
        if (this.#state === 'failed' && !this.#verified) throw this.#error;
        // The last byte is held back until the blob is verified.
        const complete = this.#verified;
        const limit = complete ? this.size : Math.min(this.#received, this.size - 1);
        if (cursor.pos < limit) {
          const chunk =
            this.#fromMemory(cursor.pos, limit) ??
            (await this.staged.readAt(cursor.pos, Math.min(CHUNK, limit - cursor.pos)));
          if (chunk.length === 0) throw new Error('staged blob is shorter than published');
          cursor.pos += chunk.length;
          stream.push(chunk);
          return;
        }
        if (complete) {
          stream.push(null);
          return;
        }
        await new Promise((resolve) => this.#events.once('progress', resolve));
      }
    } catch (err) {
      stream.destroy(err as Error);
    }
  }

  #fromMemory(pos: number, limit: number): Buffer | undefined {
    for (const r of this.#recent) if (pos >= r.offset && pos < r.offset + r.length) return r.at(pos, limit);
    return undefined;
  }

  /** Drops written batches beyond the retention window; readers behind it read from staging. */
  #prune(): void {
    let kept = this.#recent.reduce((n, r) => n + r.length, 0);
    while (this.#recent.length > 1 && kept > RETAIN_BYTES) {
      const oldest = this.#recent[0] as Batch;
      if (oldest.offset + oldest.length > this.staged.written) break;
      kept -= oldest.length;
      this.#recent.shift();
    }
  }

  async #maybeClose(): Promise<void> {
    if ((this.#state === 'done' || this.#state === 'failed') && this.#readers === 0) await this.staged.close();
  }
}
