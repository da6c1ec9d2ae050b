import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { OciError } from '../../oci/errors.js';
import { parseDigest, type Algorithm, type Digest } from '../../oci/digest.js';
import { GatewayError } from '../errors.js';
import type { BlobStore, StagedBlob } from './blob-store.js';

const HIGH_WATER_MARK = 1024 * 1024;

/**
 * Blobs as files under `<root>/blobs/<alg>/<2 hex>/<hex>`, staged under `<root>/tmp/`.
 * Stage → hash while writing → fsync → compare → rename → fsync the directory: a crash
 * at any point leaves either no blob or a complete, verified one. Paths are built
 * only from parsed digests (algorithm from an allow-list, lower-case hex).
 */
export class FsBlobStore implements BlobStore {
  readonly #blobs: string;
  readonly #tmp: string;

  private constructor(root: string) {
    this.#blobs = join(root, 'blobs');
    this.#tmp = join(root, 'tmp');
  }

  /**
   * Opens the store, removing whatever a crash left in tmp/ — unless `keepStaged`
   * (a tool such as fsck looking at the store of a gateway that may be running).
   */
  static async open(root: string, opts: { keepStaged?: boolean } = {}): Promise<FsBlobStore> {
    const store = new FsBlobStore(root);
    if (opts.keepStaged !== true) await rm(store.#tmp, { recursive: true, force: true });
    await mkdir(store.#tmp, { recursive: true });
    await mkdir(store.#blobs, { recursive: true });
    return store;
  }

  #path(d: Digest): string {
    return join(this.#blobs, d.algorithm, d.hex.slice(0, 2), d.hex);
  }

  async stat(digest: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.#path(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async modifiedAt(digest: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.#path(digest))).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async read(digest: Digest, range?: { start: number; end: number }): Promise<Readable> {
    const handle = await open(this.#path(digest), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new GatewayError('BLOB_UNKNOWN', `blob ${digest.text} is not stored`);
      throw err;
    });
    return createReadStream('', {
      fd: handle,
      highWaterMark: HIGH_WATER_MARK,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async readBytes(digest: Digest, maxBytes: number): Promise<Buffer | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.#path(digest), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const { size } = await handle.stat();
      if (size > maxBytes)
        throw new OciError('SIZE_EXCEEDED', `stored blob ${digest.text} is larger than ${maxBytes} bytes`);
      const buf = Buffer.alloc(size);
      const { bytesRead } = await handle.read(buf, 0, size, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async putBytes(digest: Digest, bytes: Uint8Array): Promise<void> {
    if ((await this.stat(digest)) === bytes.length) {
      // Written again, as far as GC's grace period is concerned.
      const now = new Date();
      await utimes(this.#path(digest), now, now).catch(() => undefined);
      return;
    }
    const staged = await this.stage();
    try {
      await staged.write(bytes);
      await staged.commit(digest, bytes.length);
    } finally {
      await staged.abort();
      await staged.close();
    }
  }

  async stage(): Promise<StagedBlob> {
    const path = join(this.#tmp, randomUUID());
    const handle = await open(path, 'wx+', 0o644);
    return new FsStagedBlob(handle, path, (d) => this.#path(d));
  }

  async delete(digest: Digest): Promise<void> {
    await unlink(this.#path(digest)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async *list(): AsyncIterable<Digest> {
    for (const alg of await readdir(this.#blobs).catch(() => [] as string[])) {
      for (const prefix of await readdir(join(this.#blobs, alg)).catch(() => [] as string[])) {
        for (const hex of await readdir(join(this.#blobs, alg, prefix)).catch(() => [] as string[])) {
          try {
            yield parseDigest(`${alg}:${hex}`);
          } catch {
            // not a blob of ours; ignored
          }
        }
      }
    }
  }
}

/** What of `chunks` is left after the first `skip` bytes (a short write). */
function rest(chunks: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = skip;
  for (const c of chunks) {
    if (left >= c.length) {
      left -= c.length;
      continue;
    }
    out.push(left > 0 ? c.subarray(left) : c);
    left = 0;
  }
  return out;
}

class FsStagedBlob implements StagedBlob {
  #written = 0;
  #reserved = 0;
  #queue: Promise<void> = Promise.resolve();
  #hashes = new Map<Algorithm, Hash>([['sha256', createHash('sha256')]]);
  #done = false;
  #closed = false;
  #verified: string | undefined;

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly finalPath: (d: Digest) => string,
  ) {}

  get written(): number {
    return this.#written;
  }

  /**
   * Queues `chunk` after everything written before it. The hash is updated at call
   * time, so calls may overlap: the bytes land in call order, and `written` counts
   * the contiguous prefix already on disk.
   */
  write(chunk: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.#done || this.#verified !== undefined)
      return Promise.reject(new GatewayError('STORE_FAILED', 'write after commit or abort'));
    const chunks = chunk instanceof Uint8Array ? [chunk] : [...chunk];
    const length = chunks.reduce((n, c) => n + c.length, 0);
    const position = this.#reserved;
    this.#reserved += length;
    for (const h of this.#hashes.values()) for (const c of chunks) h.update(c);
    const next = this.#queue.then(async () => {
      let done = 0;
      let pending = chunks;
      while (done < length) {
        const { bytesWritten } = await this.handle.writev(pending, position + done);
        done += bytesWritten;
        if (done < length) pending = rest(chunks, done);
      }
      this.#written += length;
    });
    // A failed write fails every later one and the commit.
    this.#queue = next;
    return next;
  }

  async readAt(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(Math.min(length, Math.max(0, this.#written - position)));
    if (buf.length === 0) return buf;
    const { bytesRead } = await this.handle.read(buf, 0, buf.length, position);
    return buf.subarray(0, bytesRead);
  }

  async verify(expected: Digest, expectedSize: number): Promise<void> {
    if (this.#verified === expected.text) return;
    if (this.#done) throw new GatewayError('STORE_FAILED', 'blob already committed or aborted');
    try {
      await this.#queue;
    } catch (err) {
      this.#done = true;
      await this.#discard();
      throw new GatewayError('STORE_FAILED', 'writing the staged blob failed', { cause: err });
    }
    const hash = this.#hashes.get(expected.algorithm);
    const actual = hash ? hash.digest('hex') : await this.#rehash(expected.algorithm);
    this.#hashes.clear();
    if (this.#written !== expectedSize) {
      this.#done = true;
      await this.#discard();
      throw new OciError('SIZE_MISMATCH', `received ${this.#written} bytes, expected ${expectedSize}`);
    }
    if (actual !== expected.hex) {
      this.#done = true;
      await this.#discard();
      throw new OciError(
        'DIGEST_MISMATCH',
        `content hashes to ${expected.algorithm}:${actual}, expected ${expected.text}`,
      );
    }
    this.#verified = expected.text;
  }

  async commit(expected: Digest, expectedSize: number): Promise<void> {
    await this.verify(expected, expectedSize);
    if (this.#done) throw new GatewayError('STORE_FAILED', 'blob already committed or aborted');
    this.#done = true;
    const target = this.finalPath(expected);
    const dir = target.slice(0, target.lastIndexOf('/'));
    try {
      await this.handle.sync();
      await mkdir(dir, { recursive: true });
      await rename(this.path, target);
    } catch (err) {
      await this.#discard();
      throw new GatewayError('STORE_FAILED', `committing ${expected.text} failed`, { cause: err });
    }
    const dirHandle = await open(dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }

  async #rehash(algorithm: Algorithm): Promise<string> {
    const h = createHash(algorithm);
    for (let pos = 0; pos < this.#written;) {
      const chunk = await this.readAt(pos, HIGH_WATER_MARK);
      if (chunk.length === 0) break;
      h.update(chunk);
      pos += chunk.length;
    }
    return h.digest('hex');
  }

  async #discard(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#queue.catch(() => undefined);
    await this.#discard();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue.catch(() => undefined);
    await this.handle.close();
  }
}
