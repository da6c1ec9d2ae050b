import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import { isObject, parseStrictJson } from '../oci/strict-json.js';
import { RunnerError } from './errors.js';
import { ownedName } from './owner.js';

/**
 * The user's image cache: content-addressed blobs (manifests, configs, layers,
 * attestation envelopes) and, per image reference, which manifest and envelope it
 * resolved to. A cached entry is a convenience, never a credential: every run checks
 * the envelope again with the pinned key before anything is used.
 */
export interface CachedRef {
  readonly manifest: string;
  readonly index: string | undefined;
  readonly envelope: string;
  readonly resolvedAt: string;
  /** timeVerified of the attestation used: a later run never accepts an older one. */
  readonly verifiedAt?: string | undefined;
  /** When the gateway first admitted that digest: the reference never moves to a digest admitted before it. */
  readonly firstAdmitted?: string | undefined;
  /** Set when the gateway refused the digest: the entry is not run again, but still anchors the rollback rules. */
  readonly refused?: string | undefined;
}

export class ImageCache {
  readonly #blobs: string;
  readonly #refs: string;
  readonly #tmp: string;

  constructor(readonly root: string) {
    this.#blobs = join(root, 'blobs', 'sha256');
    this.#refs = join(root, 'refs');
    this.#tmp = join(root, 'tmp');
    for (const d of [this.#blobs, this.#refs, this.#tmp]) mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  #path(d: Digest): string {
    if (d.algorithm !== 'sha256')
      throw new RunnerError('IMAGE_INVALID', `only sha256 content is cached, not ${d.algorithm}`);
    return join(this.#blobs, d.hex);
  }

  blobPath(d: Digest): string {
    return this.#path(d);
  }

  has(d: Digest, size?: number): boolean {
    try {
      const st = statSync(this.#path(d));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  /** Whether the cached blob hashes to its digest (read whole: for a blob about to be used again after a failure). */
  async verify(d: Digest): Promise<boolean> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(this.#path(d), { highWaterMark: 1024 * 1024 }))
        hash.update(chunk as Buffer);
    } catch {
      return false;
    }
    return hash.digest('hex') === d.hex;
  }

  /** Drops a cached blob (it failed its digest): the next pull fetches it again. */
  remove(d: Digest): void {
    rmSync(this.#path(d), { force: true });
  }

  /** Small blobs (manifests, configs, envelopes), hashed again on the way out. */
  readSmall(d: Digest, max: number): Buffer | undefined {
    let bytes: Buffer;
    try {
      if (statSync(this.#path(d)).size > max) return undefined;
      bytes = readFileSync(this.#path(d));
    } catch {
      return undefined;
    }
    return createHash('sha256').update(bytes).digest('hex') === d.hex ? bytes : undefined;
  }

  putSmall(d: Digest, bytes: Uint8Array): void {
    if (createHash('sha256').update(bytes).digest('hex') !== d.hex)
      throw new RunnerError('IMAGE_INVALID', `content does not match ${d.text}`);
    const tmp = join(this.#tmp, ownedName('', randomUUID()));
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, this.#path(d));
  }

  /**
   * Streams a blob into the cache, hashing and counting as it goes; it becomes
   * visible only if it has exactly `size` bytes hashing to `d`.
   */
  async putStream(d: Digest, size: number, body: Readable, progress?: (bytes: number) => void): Promise<void> {
    const tmp = join(this.#tmp, ownedName('', randomUUID()));
    const hash = createHash('sha256');
    const handle = await open(tmp, 'wx', 0o600);
    let written = 0;
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        written += buf.length;
        if (written > size) throw new RunnerError('IMAGE_INVALID', `blob ${d.text} is longer than its ${size} bytes`);
        hash.update(buf);
        await handle.write(buf);
        progress?.(buf.length);
      }
      if (written !== size)
        throw new RunnerError('IMAGE_INVALID', `blob ${d.text} ended after ${written} of ${size} bytes`);
      const actual = hash.digest('hex');
      if (actual !== d.hex)
        throw new RunnerError('IMAGE_INVALID', `blob bytes hash to sha256:${actual}, not ${d.text}`);
      await handle.sync();
      await handle.close();
      renameSync(tmp, this.#path(d));
    } catch (err) {
      body.destroy();
      await handle.close().catch(() => undefined);
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  recordRef(ref: string, entry: CachedRef): void {
    const tmp = join(this.#tmp, ownedName('', randomUUID()));
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    renameSync(tmp, join(this.#refs, refKey(ref)));
  }

  /**
   * Marks a reference refused by the gateway: it is not run from the cache again, but
   * what it resolved to and when stay (a forged refusal must not erase the rollback anchor).
   */
  markRefused(ref: string, at: Date): void {
    const entry = this.readRef(ref);
    if (entry) this.recordRef(ref, { ...entry, refused: at.toISOString() });
  }

  readRef(ref: string): CachedRef | undefined {
    let doc: unknown;
    try {
      doc = parseStrictJson(readFileSync(join(this.#refs, refKey(ref))), { maxDepth: 3 });
    } catch {
      return undefined;
    }
    if (!isObject(doc) || typeof doc.manifest !== 'string' || typeof doc.envelope !== 'string') return undefined;
    return {
      manifest: doc.manifest,
      index: typeof doc.index === 'string' ? doc.index : undefined,
      envelope: doc.envelope,
      resolvedAt: String(doc.resolvedAt ?? ''),
      verifiedAt: typeof doc.verifiedAt === 'string' ? doc.verifiedAt : undefined,
      firstAdmitted: typeof doc.firstAdmitted === 'string' ? doc.firstAdmitted : undefined,
      refused: typeof doc.refused === 'string' ? doc.refused : undefined,
    };
  }
}

function refKey(ref: string): string {
  return createHash('sha256').update(ref).digest('hex');
}
