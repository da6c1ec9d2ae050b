import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { S3BlobStore, type S3StoreOptions } from '../../gateway/store/s3-blob-store.js';
import { fsck } from '../../gateway/store/fsck.js';
import { SqliteMetadataStore } from '../../gateway/metadata/sqlite-metadata-store.js';
import { GatewayError } from '../../gateway/errors.js';
import { digestOf } from '../../oci/digest.js';
import { startSwift, type TestSwift } from '../helpers/swift.js';
import { tempDir } from '../helpers/tmp.js';
import { blobStoreContract } from './blob-store.contract.js';

/**
 * The S3 BlobStore on a real S3-compatible server (OpenStack Swift with s3api, started
 * by the test): the contract every store passes, then what only an object store has —
 * multipart uploads that are invisible until complete, abandoned ones aborted at open,
 * range reads across parts, pre-signed URLs, and a server that refuses.
 */
async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('S3BlobStore on Swift s3api', () => {
  let swift: TestSwift;
  const stores: S3BlobStore[] = [];
  const spool = tempDir('portcullis-s3-spool-');
  before(async () => {
    swift = await startSwift();
  });
  after(async () => {
    for (const s of stores) s.close();
    await swift?.stop();
    spool.cleanup();
  });

  const options = async (o: Partial<S3StoreOptions> = {}): Promise<S3StoreOptions> => ({
    endpoint: swift.endpoint,
    region: swift.region,
    bucket: o.bucket ?? (await swift.createBucket()),
    prefix: 'cache/',
    accessKeyId: swift.accessKeyId,
    secretAccessKey: swift.secretAccessKey,
    spoolDir: spool.path,
    partSize: 5 * 1024 * 1024,
    ...o,
  });
  const open = async (o: Partial<S3StoreOptions> = {}) => {
    const s = await S3BlobStore.open(await options(o));
    stores.push(s);
    return s;
  };

  blobStoreContract('S3BlobStore', async () => ({ store: await open(), cleanup: async () => undefined }));

  test('a multipart blob is invisible until every part is in and it verified; ranges cross parts', async () => {
    const s = await open();
    const bytes = randomBytes(11 * 1024 * 1024 + 17);
    const d = digestOf(bytes);
    const staged = await s.stage();
    for (let i = 0; i < bytes.length; i += 1024 * 1024) await staged.write(bytes.subarray(i, i + 1024 * 1024));
    await staged.verify(d, bytes.length);
    assert.equal(await s.stat(d), undefined, 'verified but not committed: not readable by digest');
    await staged.commit(d, bytes.length);
    await staged.close();
    assert.equal(await s.stat(d), bytes.length);
    const start = 5 * 1024 * 1024 - 3;
    assert.deepEqual(await readAll(await s.read(d, { start, end: start + 9 })), bytes.subarray(start, start + 10));
    assert.deepEqual(await readAll(await s.read(d)), bytes);
  });

  test('a multipart upload that fails is aborted, and nothing is visible', async () => {
    const bucket = await swift.createBucket();
    const s = await open({ bucket });
    const bytes = randomBytes(6 * 1024 * 1024);
    const d = digestOf(bytes);
    const staged = await s.stage();
    await staged.write(bytes);
    // Wrong size claimed: verification fails before anything is uploaded.
    await assert.rejects(
      staged.commit(d, bytes.length + 1),
      (e: Error & { code?: string }) => e.code === 'SIZE_MISMATCH',
    );
    await staged.close();
    const uploads = await swift.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.equal(uploads.Uploads?.length ?? 0, 0);
    const objects = await swift.client().send(new ListObjectsV2Command({ Bucket: bucket }));
    assert.equal(objects.KeyCount ?? 0, 0);
  });

  test('multipart uploads a crash left behind are aborted when a store opens; recent ones are left', async () => {
    const bucket = await swift.createBucket();
    const c = swift.client();
    await c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `cache/blobs/sha256/${'a'.repeat(64)}` }));
    await c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `other/${'b'.repeat(64)}` }));
    await open({ bucket }); // a day's grace: both stay
    assert.equal((await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length, 2);
    // A day and an hour on (the server gives Initiated to the second, rounded up): the one under the prefix is abandoned.
    await open({ bucket, now: () => Date.now() + 25 * 60 * 60 * 1000 });
    const left = (await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
    assert.deepEqual(
      left.map((u) => u.Key),
      [`other/${'b'.repeat(64)}`],
      'only uploads under the store prefix are touched',
    );
    c.destroy();
  });

  test('objects that are not blobs of ours are not listed; a pre-signed URL serves the blob', async () => {
    const bucket = await swift.createBucket();
    const s = await open({ bucket });
    const c = swift.client();
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: 'cache/blobs/sha256/not-hex', Body: 'x' }));
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: 'elsewhere/blobs/sha256/' + 'c'.repeat(64), Body: 'x' }));
    c.destroy();
    const bytes = Buffer.from('pre-signed');
    await s.putBytes(digestOf(bytes), bytes);
    const listed: string[] = [];
    for await (const d of s.list()) listed.push(d.text);
    assert.deepEqual(listed, [digestOf(bytes).text]);
    const res = await fetch(await s.presignedUrl(digestOf(bytes), 60));
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
  });

  test('fsck finds an object that does not hash to its key, and --repair removes only that one', async () => {
    const bucket = await swift.createBucket();
    const s = await open({ bucket });
    const good = Buffer.from('good bytes');
    await s.putBytes(digestOf(good), good);
    const forged = digestOf(Buffer.from('what the key promises'));
    const c = swift.client();
    await c.send(
      new PutObjectCommand({ Bucket: bucket, Key: `cache/blobs/sha256/${forged.hex}`, Body: 'other bytes' }),
    );
    c.destroy();
    const metadata = new SqliteMetadataStore(join(spool.path, `fsck-${bucket}.db`));
    try {
      const found = await fsck(s, metadata, { repair: false });
      assert.equal(found.blobs, 2);
      assert.deepEqual(
        found.findings.map((f) => [f.kind, f.digest, f.repaired]),
        [['blob.corrupt', forged.text, false]],
      );
      const repaired = await fsck(s, metadata, { repair: true });
      assert.deepEqual(
        repaired.findings.map((f) => [f.kind, f.repaired]),
        [['blob.corrupt', true]],
      );
      assert.equal(await s.stat(forged), undefined);
      assert.equal(await s.stat(digestOf(good)), good.length);
      assert.deepEqual((await fsck(s, metadata, { repair: false })).findings, []);
    } finally {
      await metadata.close();
    }
  });

  test('a server that accepts and never answers fails the open within its time limit', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    const t0 = Date.now();
    try {
      await assert.rejects(
        open({ endpoint: `http://127.0.0.1:${port}`, bucket: 'silent', requestTimeoutMs: 500 }),
        (e: unknown) => e instanceof GatewayError && e.code === 'STORE_FAILED',
      );
      assert.ok(Date.now() - t0 < 15_000, 'bounded by the time limit and the SDK retries');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  test('wrong credentials or a missing bucket stop the store at open', async () => {
    await assert.rejects(
      open({ bucket: 'no-such-bucket' }),
      (e: unknown) => e instanceof GatewayError && e.code === 'STORE_FAILED',
    );
    await assert.rejects(
      open({ secretAccessKey: 'not-the-key-7f3a9c' }),
      (e: unknown) => e instanceof GatewayError && e.code === 'STORE_FAILED' && !e.message.includes('7f3a9c'),
    );
  });
});
