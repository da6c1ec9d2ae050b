import { createHash } from 'node:crypto';
import { Agent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { digestOf, parseDigest, type Digest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { trustedCertificates } from '../../oci/registry-client/ca.js';
import { GatewayError } from '../errors.js';
import type { BlobStore, StagedBlob } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';

/**
 * Blobs as objects `<prefix>blobs/<alg>/<hex>` in an S3-compatible bucket (AWS, MinIO,
 * Ceph RGW, Swift's s3api), path-style by default. A blob is staged in a local spool
 * file (hashed as it is written, readable by followers of the fill), verified there,
 * and only then uploaded to its digest's key — in one PUT, or as a multipart upload
 * whose parts each carry their MD5 and which is completed only once every part is
 * in. Until the PUT or the completion returns, nothing is readable under the digest;
 * a multipart upload that fails is aborted, and ones a crash left behind are aborted
 * when a store is opened (those older than `abandonedAfterMs`, so another replica's
 * upload in progress is left alone). The SDK's default request checksums (CRC32 in
 * an aws-chunked trailer) are turned off: some servers hang on them; Content-MD5 is
 * sent instead.
 */
export interface S3StoreOptions {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  /** Key prefix ('' or ending in '/'). */
  readonly prefix: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Bucket in the path (default), not in the host name. */
  readonly forcePathStyle?: boolean;
  /** Where blobs are spooled while they fill. */
  readonly spoolDir: string;
  /** Leave what is in the spool (a tool beside a running gateway); by default a crash's leftovers are removed. */
  readonly keepSpool?: boolean;
  /** Multipart part size (default 16 MiB; at least 5 MiB, as S3 requires). */
  readonly partSize?: number;
  readonly abandonedAfterMs?: number;
  /** Extra CA certificates (PEM) for an https endpoint, besides Node's and the machine's. */
  readonly ca?: readonly string[];
  readonly requestTimeoutMs?: number;
  readonly now?: () => number;
}

const MIN_PART = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

export class S3BlobStore implements BlobStore {
  readonly #s3: S3Client;
  /** For blob bodies only. */
  readonly #data: S3Client;
  readonly #o: S3StoreOptions;
  readonly #spool: FsBlobStore;
  readonly #partSize: number;

  private constructor(s3: S3Client, data: S3Client, o: S3StoreOptions, spool: FsBlobStore) {
    this.#s3 = s3;
    this.#data = data;
    this.#o = o;
    this.#spool = spool;
    this.#partSize = Math.max(MIN_PART, o.partSize ?? 16 * 1024 * 1024);
  }

  /** Opens the store: checks the bucket answers, and aborts multipart uploads a crash left behind. */
  static async open(o: S3StoreOptions): Promise<S3BlobStore> {
    if (o.prefix !== '' && !o.prefix.endsWith('/'))
      throw new GatewayError('STORE_FAILED', `S3 key prefix ${o.prefix} must end with /`);
    const ca = o.endpoint.startsWith('https:') ? trustedCertificates({ extra: o.ca ?? [] }) : undefined;
    // Two clients, two connection pools: blob bodies streaming to slow clients never
    // hold up the small requests (HEAD, PUT, listings) every pull makes.
    const client = (maxSockets: number) =>
      new S3Client({
        endpoint: o.endpoint,
        region: o.region,
        forcePathStyle: o.forcePathStyle ?? true,
        credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // SlowDown and 5xx are tried again, with the SDK's backoff.
        maxAttempts: 5,
        requestHandler: new NodeHttpHandler({
          ...(ca
            ? { httpsAgent: new Agent({ keepAlive: true, maxSockets, ca }) }
            : { httpAgent: new HttpAgent({ keepAlive: true, maxSockets }) }),
          connectionTimeout: 10_000,
          // Until the response headers: a server that accepts and then says nothing fails the request.
          requestTimeout: o.requestTimeoutMs ?? 30_000,
          throwOnRequestTimeout: true,
          // Silence on the socket, a body included.
          socketTimeout: o.requestTimeoutMs ?? 30_000,
        }),
      });
    const store = new S3BlobStore(
      client(64),
      client(512),
      o,
      await FsBlobStore.open(o.spoolDir, { keepStaged: o.keepSpool === true }),
    );
    try {
      await store.#abortAbandoned();
    } catch (err) {
      store.close();
      throw storeError(`the bucket ${o.bucket} at ${o.endpoint} cannot be used`, err);
    }
    return store;
  }

  #key(d: Digest): string {
    return `${this.#o.prefix}blobs/${d.algorithm}/${d.hex}`;
  }

  async #abortAbandoned(): Promise<void> {
    const now = (this.#o.now ?? Date.now)();
    const limit = this.#o.abandonedAfterMs ?? 24 * 60 * 60 * 1000;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const res = await this.#s3.send(
        new ListMultipartUploadsCommand({
          Bucket: this.#o.bucket,
          Prefix: `${this.#o.prefix}blobs/`,
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {}),
        }),
      );
      for (const u of res.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        // Undated, or younger than the limit: perhaps another replica's upload in progress.
        if (u.Initiated === undefined || now - u.Initiated.getTime() < limit) continue;
        await this.#s3
          .send(new AbortMultipartUploadCommand({ Bucket: this.#o.bucket, Key: u.Key, UploadId: u.UploadId }))
          .catch(() => undefined);
      }
      if (res.IsTruncated !== true) return;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
  }

  async stat(digest: Digest): Promise<number | undefined> {
    try {
      const res = await this.#s3.send(new HeadObjectCommand({ Bucket: this.#o.bucket, Key: this.#key(digest) }));
      return res.ContentLength;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw storeError(`HEAD ${digest.text}`, err);
    }
  }

  async modifiedAt(digest: Digest): Promise<number | undefined> {
    try {
      const res = await this.#s3.send(new HeadObjectCommand({ Bucket: this.#o.bucket, Key: this.#key(digest) }));
      return res.LastModified?.getTime();
    } catch (err) {
      if (notFound(err)) return undefined;
      throw storeError(`HEAD ${digest.text}`, err);
    }
  }

  async read(digest: Digest, range?: { start: number; end: number }): Promise<Readable> {
    let res;
    try {
      res = await this.#data.send(
        new GetObjectCommand({
          Bucket: this.#o.bucket,
          Key: this.#key(digest),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
    } catch (err) {
      if (notFound(err)) throw new GatewayError('BLOB_UNKNOWN', `blob ${digest.text} is not stored`);
      throw storeError(`GET ${digest.text}`, err);
    }
    const body = res.Body as Readable;
    // A server that ignored the range (or sent another) must not pass for the slice asked for.
    const want = range ? range.end - range.start + 1 : undefined;
    const rangeOk =
      !range ||
      (res.ContentRange?.startsWith(`bytes ${range.start}-${range.end}/`) === true && res.ContentLength === want);
    if (!rangeOk) {
      body.destroy();
      throw new GatewayError(
        'STORE_FAILED',
        `object store: GET ${digest.text} answered ${res.ContentRange ?? 'no Content-Range'} for bytes ${range?.start}-${range?.end}`,
      );
    }
    return body;
  }

  async readBytes(digest: Digest, maxBytes: number): Promise<Buffer | undefined> {
    let body: Readable;
    try {
      const res = await this.#s3.send(new GetObjectCommand({ Bucket: this.#o.bucket, Key: this.#key(digest) }));
      body = res.Body as Readable;
      if ((res.ContentLength ?? 0) > maxBytes) {
        body.destroy();
        throw new OciError('SIZE_EXCEEDED', `stored blob ${digest.text} is larger than ${maxBytes} bytes`);
      }
    } catch (err) {
      if (notFound(err)) return undefined;
      if (err instanceof OciError) throw err;
      throw storeError(`GET ${digest.text}`, err);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of body) {
        size += (c as Buffer).length;
        if (size > maxBytes) break;
        chunks.push(c as Buffer);
      }
    } catch (err) {
      throw storeError(`reading ${digest.text}`, err);
    }
    if (size > maxBytes) {
      body.destroy();
      throw new OciError('SIZE_EXCEEDED', `stored blob ${digest.text} is larger than ${maxBytes} bytes`);
    }
    return Buffer.concat(chunks);
  }

  async putBytes(digest: Digest, bytes: Uint8Array): Promise<void> {
    const actual = digestOf(bytes, digest.algorithm);
    if (actual.hex !== digest.hex)
      throw new OciError('DIGEST_MISMATCH', `content hashes to ${actual.text}, expected ${digest.text}`);
    if ((await this.stat(digest)) === bytes.length) return;
    await this.#put(digest, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  async #put(digest: Digest, body: Buffer): Promise<void> {
    try {
      await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.#o.bucket,
          Key: this.#key(digest),
          Body: body,
          ContentLength: body.length,
          ContentMD5: md5(body),
          ContentType: 'application/octet-stream',
        }),
      );
    } catch (err) {
      throw storeError(`PUT ${digest.text}`, err);
    }
  }

  /** Uploads a verified spool file in parts; the object appears only at completion. */
  async #multipart(digest: Digest, size: number, readAt: (pos: number, len: number) => Promise<Buffer>) {
    const partSize = Math.max(this.#partSize, Math.ceil(size / MAX_PARTS));
    const Key = this.#key(digest);
    const Bucket = this.#o.bucket;
    let uploadId: string | undefined;
    try {
      uploadId = (await this.#s3.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId;
      if (uploadId === undefined) throw new Error('the server gave no UploadId');
      const parts: CompletedPart[] = [];
      for (let pos = 0, n = 1; pos < size; pos += partSize, n++) {
        const body = await readAt(pos, Math.min(partSize, size - pos));
        if (body.length !== Math.min(partSize, size - pos)) throw new Error('the spool file is shorter than verified');
        const res = await this.#s3.send(
          new UploadPartCommand({
            Bucket,
            Key,
            UploadId: uploadId,
            PartNumber: n,
            Body: body,
            ContentLength: body.length,
            ContentMD5: md5(body),
          }),
        );
        parts.push({ PartNumber: n, ETag: res.ETag });
      }
      await this.#s3.send(
        new CompleteMultipartUploadCommand({ Bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (err) {
      if (uploadId !== undefined)
        await this.#s3
          .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }))
          .catch(() => undefined);
      throw storeError(`uploading ${digest.text}`, err);
    }
  }

  async stage(): Promise<StagedBlob> {
    return new S3StagedBlob(await this.#spool.stage(), async (digest, size, readAt) => {
      if ((await this.stat(digest)) === size) return; // another replica stored it already
      if (size > this.#partSize) return this.#multipart(digest, size, readAt);
      const body = await readAt(0, size);
      if (body.length !== size) throw new GatewayError('STORE_FAILED', 'the spool file is shorter than verified');
      await this.#put(digest, body);
    });
  }

  async delete(digest: Digest): Promise<void> {
    try {
      await this.#s3.send(new DeleteObjectCommand({ Bucket: this.#o.bucket, Key: this.#key(digest) }));
    } catch (err) {
      if (!notFound(err)) throw storeError(`DELETE ${digest.text}`, err);
    }
  }

  async *list(): AsyncIterable<Digest> {
    const prefix = `${this.#o.prefix}blobs/`;
    let token: string | undefined;
    do {
      const res = await this.#s3.send(
        new ListObjectsV2Command({
          Bucket: this.#o.bucket,
          Prefix: prefix,
          ...(token !== undefined ? { ContinuationToken: token } : {}),
        }),
      );
      for (const o of res.Contents ?? []) {
        const rest = o.Key?.slice(prefix.length) ?? '';
        const slash = rest.indexOf('/');
        try {
          yield parseDigest(`${rest.slice(0, slash)}:${rest.slice(slash + 1)}`);
        } catch {
          // not a blob of ours; ignored
        }
      }
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** A time-limited GET URL for a stored blob (clients may be redirected to it). */
  async presignedUrl(digest: Digest, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.#s3, new GetObjectCommand({ Bucket: this.#o.bucket, Key: this.#key(digest) }), {
      expiresIn: expiresInSeconds,
    });
  }

  close(): void {
    this.#s3.destroy();
    this.#data.destroy();
  }
}

/** A local spool (hashing, followers' reads) whose commit uploads the verified bytes. */
class S3StagedBlob implements StagedBlob {
  #done = false;

  constructor(
    private readonly local: StagedBlob,
    private readonly upload: (
      d: Digest,
      size: number,
      readAt: (pos: number, len: number) => Promise<Buffer>,
    ) => Promise<void>,
  ) {}

  get written(): number {
    return this.local.written;
  }

  write(chunk: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.local.write(chunk);
  }

  readAt(position: number, length: number): Promise<Buffer> {
    return this.local.readAt(position, length);
  }

  verify(expected: Digest, expectedSize: number): Promise<void> {
    return this.local.verify(expected, expectedSize);
  }

  async commit(expected: Digest, expectedSize: number): Promise<void> {
    await this.local.verify(expected, expectedSize);
    if (this.#done) throw new GatewayError('STORE_FAILED', 'blob already committed or aborted');
    this.#done = true;
    try {
      await this.upload(expected, expectedSize, (p, l) => this.local.readAt(p, l));
    } finally {
      await this.local.abort();
    }
  }

  async abort(): Promise<void> {
    this.#done = true;
    await this.local.abort();
  }

  close(): Promise<void> {
    return this.local.close();
  }
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('base64');
}

function notFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

function storeError(what: string, err: unknown): GatewayError {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return new GatewayError(
    'STORE_FAILED',
    `object store: ${what} failed: ${e.name ?? 'Error'}${status !== undefined ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`,
    { cause: err },
  );
}
