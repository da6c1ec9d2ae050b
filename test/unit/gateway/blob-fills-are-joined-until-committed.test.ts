import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { digestOf } from '../../../oci/digest.js';
import { createMetrics } from '../../../gateway/metrics.js';
import type { MetadataStore } from '../../../gateway/metadata/metadata-store.js';
import { BlobService } from '../../../gateway/pipeline/blobs.js';
import type { BlobStore, StagedBlob } from '../../../gateway/store/blob-store.js';
import { FsBlobStore } from '../../../gateway/store/fs-blob-store.js';
import type { Address } from '../../../gateway/upstreams.js';
import type { CompiledPolicy } from '../../../policies/model.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * The pipeline's blob half with the filesystem store, and an upstream that answers
 * from memory (the gap between verifying and committing a blob cannot be held open
 * with a real registry). Commits wait for a gate the test opens.
 */
const dir = tempDir('portcullis-fills-');
after(() => dir.cleanup());

const bytes = Buffer.alloc(3 * 1024 * 1024, 7);
const digest = digestOf(bytes);

async function setup(opts: { drip?: boolean; failCommit?: boolean } = {}) {
  const fs = await FsBlobStore.open(`${dir.path}/${Math.random().toString(36).slice(2)}`);
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((r) => (openGate = r));
  let commits = 0;
  const store: BlobStore = {
    stat: (d) => fs.stat(d),
    modifiedAt: (d) => fs.modifiedAt(d),
    read: (d, r) => fs.read(d, r),
    putBytes: (d, b) => fs.putBytes(d, b),
    readBytes: (d, m) => fs.readBytes(d, m),
    delete: (d) => fs.delete(d),
    list: () => fs.list(),
    stage: async (): Promise<StagedBlob> => {
      const staged = await fs.stage();
      return {
        get written() {
          return staged.written;
        },
        write: (c) => staged.write(c),
        readAt: (p, n) => staged.readAt(p, n),
        verify: (d, n) => staged.verify(d, n),
        commit: async (d, n) => {
          await gate;
          if (opts.failCommit) {
            await staged.abort();
            throw new Error('disk full');
          }
          commits++;
          return staged.commit(d, n);
        },
        abort: () => staged.abort(),
        close: () => staged.close(),
      };
    },
  };
  let fetches = 0;
  const upstream = {
    config: { timeouts: { minBytesPerSecond: 0, idleMs: 1000 } },
    client: {
      blob: async (_repo: string, _digest: string, signal?: AbortSignal) => {
        fetches++;
        const body = opts.drip
          ? new Readable({ read() {} })
          : Readable.from([bytes.subarray(0, 1 << 20), bytes.subarray(1 << 20)]);
        signal?.addEventListener('abort', () => body.destroy(new Error('aborted')));
        return { status: 200, headers: { 'content-length': String(bytes.length) }, body };
      },
    },
  };
  const metadata = {
    admittedBlob: async () => ({ size: bytes.length, attachmentOnly: false }),
  } as unknown as MetadataStore;
  const policy = () => ({ digest: { text: 'sha256:policy' } }) as unknown as CompiledPolicy;
  const service = new BlobService(store, metadata, createMetrics(), policy);
  const addr = { name: 'up/app', repository: 'app', upstream } as unknown as Address;
  return { service, addr, fs, openGate, fetches: () => fetches, commits: () => commits };
}

async function readAll(stream: Readable | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as Readable) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('a request arriving after the blob is verified but before it is committed follows the same fill', async () => {
  const s = await setup();
  try {
    const first = await readAll((await s.service.open(s.addr, digest, undefined)).stream);
    assert.equal(createHash('sha256').update(first).digest('hex'), digest.hex);
    // The whole blob went out; its commit is still waiting.
    assert.equal(await s.fs.stat(digest), undefined);
    assert.equal(s.service.fillsInFlight, 1);

    const second = await readAll((await s.service.open(s.addr, digest, undefined)).stream);
    assert.deepEqual(second, bytes);
    assert.equal(s.fetches(), 1, 'no second upstream fetch for a blob that is being committed');
  } finally {
    s.openGate();
    await s.service.drain();
  }
  assert.equal(s.commits(), 1);
  assert.equal(await s.fs.stat(digest), bytes.length);
  assert.equal(s.service.fillsInFlight, 0);
});

test('draining on shutdown stops a fill that is still receiving and keeps nothing of it', async () => {
  const s = await setup({ drip: true });
  s.openGate();
  const body = await s.service.open(s.addr, digest, undefined);
  const reading = readAll(body.stream).then(
    () => 'complete',
    () => 'cut short',
  );
  await s.service.drain();
  assert.equal(await reading, 'cut short');
  assert.equal(s.commits(), 0);
  assert.equal(await s.fs.stat(digest), undefined);
  assert.equal(s.service.fillsInFlight, 0);
});

test('a commit that fails after verification lets every follower finish with the verified bytes, and stores nothing', async () => {
  const s = await setup({ failCommit: true });
  let joined: Awaited<ReturnType<typeof s.service.open>>;
  try {
    const first = await readAll((await s.service.open(s.addr, digest, undefined)).stream);
    assert.deepEqual(first, bytes);
    // Joined while the commit is pending, and read only once it has failed.
    joined = await s.service.open(s.addr, digest, undefined);
  } finally {
    s.openGate();
    await s.service.drain();
  }
  assert.deepEqual(await readAll(joined.stream), bytes);
  assert.equal(await s.fs.stat(digest), undefined);
  assert.equal(s.service.fillsInFlight, 0);
  // Not cached, so the next request fetches again.
  await readAll((await s.service.open(s.addr, digest, undefined)).stream);
  assert.equal(s.fetches(), 2);
});
