import type { Readable } from 'node:stream';
import type { Digest } from '../../oci/digest.js';

/**
 * Content-addressed blob storage. Invariant: `read(d)` only ever yields bytes that
 * hash to `d` — nothing reaches the store except through `StagedBlob.commit`, which
 * compares digest and size before the blob becomes visible.
 */
export interface BlobStore {
  /** Size of a stored blob, or undefined. */
  stat(digest: Digest): Promise<number | undefined>;
  /** When a stored blob was written (ms since the epoch), or undefined (GC's grace period). */
  modifiedAt(digest: Digest): Promise<number | undefined>;
  /** A stream of a stored blob, optionally of the inclusive byte range [start, end]. */
  read(digest: Digest, range?: { start: number; end: number }): Promise<Readable>;
  /** Small blobs (manifests): stored after the digest is checked. */
  putBytes(digest: Digest, bytes: Uint8Array): Promise<void>;
  readBytes(digest: Digest, maxBytes: number): Promise<Buffer | undefined>;
  /** A place to write a blob before it is verified. */
  stage(): Promise<StagedBlob>;
  delete(digest: Digest): Promise<void>;
  list(): AsyncIterable<Digest>;
  /** A time-limited URL a client may GET the stored blob from directly (object stores only). */
  presignedUrl?(digest: Digest, expiresInSeconds: number): Promise<string>;
  /** Releases connections (object stores); files need nothing. */
  close?(): Promise<void> | void;
}

export interface StagedBlob {
  /** Bytes written so far. */
  readonly written: number;
  /** Appends one chunk, or several in one write (no copy to join them). */
  write(chunk: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** Reads back already-written bytes (for readers following a fill in progress). */
  readAt(position: number, length: number): Promise<Buffer>;
  /**
   * Checks, once every write has landed, that what was written hashes to `expected`
   * and has `expectedSize` bytes; otherwise discards it and throws DIGEST_MISMATCH or
   * SIZE_MISMATCH. Nothing becomes visible yet.
   */
  verify(expected: Digest, expectedSize: number): Promise<void>;
  /**
   * Makes the blob visible as `expected` (durably: fsync, rename, fsync of the
   * directory) if, and only if, it verifies; `verify` is run first when it has not been.
   */
  commit(expected: Digest, expectedSize: number): Promise<void>;
  /** Discards the staged bytes. Safe to call more than once, and after commit. */
  abort(): Promise<void>;
  /** Releases the staging handle once no reader needs `readAt` any more. */
  close(): Promise<void>;
}
