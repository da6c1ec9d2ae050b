import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OciError } from './errors.js';

/**
 * A validated content digest. Only sha256 and sha512 are accepted: store paths and
 * upstream URLs are built from digests, so anything outside this grammar is refused
 * before it can reach a filesystem path or a request line (image-spec descriptor.md).
 */
export type Algorithm = 'sha256' | 'sha512';
export interface Digest {
  readonly algorithm: Algorithm;
  readonly hex: string;
  readonly text: string;
}

const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function parseDigest(text: string): Digest {
  if (typeof text !== 'string' || text.length > 200 || !DIGEST_GRAMMAR.test(text)) {
    throw new OciError('DIGEST_INVALID', `not a digest: ${JSON.stringify(String(text).slice(0, 80))}`);
  }
  const colon = text.indexOf(':');
  const algorithm = text.slice(0, colon);
  const hex = text.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new OciError('DIGEST_UNSUPPORTED', `unsupported digest algorithm ${JSON.stringify(algorithm)}`);
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[0-9a-f]+$/.test(hex)) {
    throw new OciError(
      'DIGEST_INVALID',
      `${algorithm} digest must be ${HEX_LENGTH[algorithm]} lowercase hex characters`,
    );
  }
  return { algorithm, hex, text };
}

export function isDigest(text: string): boolean {
  try {
    parseDigest(text);
    return true;
  } catch {
    return false;
  }
}

export function digestOf(bytes: Uint8Array, algorithm: Algorithm = 'sha256'): Digest {
  const hex = createHash(algorithm).update(bytes).digest('hex');
  return { algorithm, hex, text: `${algorithm}:${hex}` };
}

/** Throws DIGEST_MISMATCH unless `bytes` hash to `expected`. */
export function assertDigest(bytes: Uint8Array, expected: Digest): void {
  const actual = digestOf(bytes, expected.algorithm);
  if (actual.hex !== expected.hex) {
    throw new OciError('DIGEST_MISMATCH', `content hashes to ${actual.text}, expected ${expected.text}`);
  }
}

/**
 * A pass-through stream that hashes and counts what flows through it and refuses to
 * pass more than `maxBytes`. It does not judge the result; the caller compares
 * `digest()` and `bytes` once the stream has ended.
 */
export class HashingCounter extends Transform {
  readonly #hash: Hash;
  readonly #algorithm: Algorithm;
  readonly #maxBytes: number;
  bytes = 0;

  constructor(algorithm: Algorithm, maxBytes = Number.MAX_SAFE_INTEGER) {
    super();
    this.#algorithm = algorithm;
    this.#hash = createHash(algorithm);
    this.#maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#maxBytes) {
      done(new OciError('SIZE_EXCEEDED', `more than ${this.#maxBytes} bytes`));
      return;
    }
    this.#hash.update(chunk);
    done(null, chunk);
  }

  digest(): Digest {
    const hex = this.#hash.digest('hex');
    return { algorithm: this.#algorithm, hex, text: `${this.#algorithm}:${hex}` };
  }
}
