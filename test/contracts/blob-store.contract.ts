import assert from 'node:assert/strict';
import { test } from 'node:test';
import { digestOf, parseDigest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import type { BlobStore } from '../../gateway/store/blob-store.js';

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** What every BlobStore must do. `open` gives a fresh, empty store. */
export function blobStoreContract(
  name: string,
  open: () => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>,
): void {
  const withStore = (title: string, body: (s: BlobStore) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const { store, cleanup } = await open();
      try {
        await body(store);
      } finally {
        await cleanup();
      }
    });

  withStore('a committed blob reads back whole and by range', async (s) => {
    const bytes = Buffer.from('0123456789'.repeat(1000));
    const d = digestOf(bytes);
    const staged = await s.stage();
    await staged.write(bytes.subarray(0, 5000));
    await staged.write(bytes.subarray(5000));
    assert.deepEqual(await staged.readAt(4995, 10), bytes.subarray(4995, 5005));
    await staged.commit(d, bytes.length);
    await staged.close();
    assert.equal(await s.stat(d), bytes.length);
    assert.deepEqual(await readAll(await s.read(d)), bytes);
    assert.deepEqual(await readAll(await s.read(d, { start: 10, end: 19 })), bytes.subarray(10, 20));
  });

  withStore('a digest mismatch commits nothing', async (s) => {
    const d = digestOf(Buffer.from('expected'));
    const staged = await s.stage();
    await staged.write(Buffer.from('something else'));
    await assert.rejects(staged.commit(d, 14), (e: unknown) => e instanceof OciError && e.code === 'DIGEST_MISMATCH');
    await staged.close();
    assert.equal(await s.stat(d), undefined);
  });

  withStore('a size mismatch commits nothing, even when the hash matches', async (s) => {
    const bytes = Buffer.from('exact');
    const staged = await s.stage();
    await staged.write(bytes);
    await assert.rejects(
      staged.commit(digestOf(bytes), 6),
      (e: unknown) => e instanceof OciError && e.code === 'SIZE_MISMATCH',
    );
    await staged.close();
    assert.equal(await s.stat(digestOf(bytes)), undefined);
  });

  withStore('an aborted stage leaves nothing; putBytes verifies; delete and list work', async (s) => {
    const staged = await s.stage();
    await staged.write(Buffer.from('partial'));
    await staged.abort();
    await staged.close();
    const bytes = Buffer.from('{"manifest":true}');
    await assert.rejects(
      s.putBytes(parseDigest(`sha256:${'0'.repeat(64)}`), bytes),
      (e: unknown) => e instanceof OciError && e.code === 'DIGEST_MISMATCH',
    );
    await s.putBytes(digestOf(bytes), bytes);
    assert.deepEqual(await s.readBytes(digestOf(bytes), 1024), bytes);
    const listed: string[] = [];
    for await (const d of s.list()) listed.push(d.text);
    assert.deepEqual(listed, [digestOf(bytes).text]);
    await s.delete(digestOf(bytes));
    assert.equal(await s.readBytes(digestOf(bytes), 1024), undefined);
  });

  withStore('a sha512 blob is verified too', async (s) => {
    const bytes = Buffer.from('five-twelve');
    const d = digestOf(bytes, 'sha512');
    const staged = await s.stage();
    await staged.write(bytes);
    await staged.commit(d, bytes.length);
    await staged.close();
    assert.equal(await s.stat(d), bytes.length);
  });
}
