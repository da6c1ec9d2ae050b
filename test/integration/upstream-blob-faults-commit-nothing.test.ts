import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  acceptAnythingPolicy,
  serveImage,
  sha256,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { startTestGateway, storeSnapshot, type TestGateway } from '../helpers/gateway.js';

/** Reads a whole response; resolves to the bytes or rejects when the body is cut short. */
async function readAll(url: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

describe('a faulty upstream blob is never committed and never ends cleanly', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  const good = Buffer.alloc(300_000, 7);
  const evil = Buffer.alloc(300_000, 9);
  let image: ReturnType<typeof serveImage>;

  before(async () => {
    up = await startFaultRegistry();
    image = serveImage(up, 'faults/app', 'v1', [
      { bytes: good }, // 0: wrong digest — the server sends `evil`
      { bytes: Buffer.from('truncated layer body'.repeat(5000)) }, // 1: truncated
      { bytes: Buffer.from('x'.repeat(1000)) }, // 2: server sends more than the descriptor
      { bytes: Buffer.from('slow'.repeat(5000)) }, // 3: slow drip
    ]);
    const [wrong, trunc, long, slow] = image.layerDigests as [string, string, string, string];
    up.route('GET', `/v2/faults/app/blobs/${wrong}`, (_req, res) => {
      res.writeHead(200, { 'content-length': evil.length });
      res.end(evil);
    });
    up.route('GET', `/v2/faults/app/blobs/${trunc}`, (_req, res) => {
      res.writeHead(200, { 'content-length': 100_000 });
      res.write(Buffer.alloc(40_000, 1));
      setTimeout(() => res.destroy(), 50);
    });
    up.route('GET', `/v2/faults/app/blobs/${long}`, (_req, res) => {
      res.writeHead(200);
      res.end(Buffer.from('x'.repeat(2000)));
    });
    up.route('GET', `/v2/faults/app/blobs/${slow}`, (_req, res) => {
      res.writeHead(200, { 'content-length': 20_000 });
      const timer = setInterval(() => res.write('s'), 100);
      res.on('close', () => clearInterval(timer));
    });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: faulty, timeouts: { idleMs: 1000, minBytesPerSecond: 2000 } }`,
      policy: acceptAnythingPolicy(),
    });
    const m = await fetch(`${gw.url}/v2/faulty/faults/app/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    await m.arrayBuffer();
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  const tmpFiles = () => readdirSync(join(gw.dataDir, 'store', 'tmp'));
  const stored = async () => Object.keys(await storeSnapshot(gw)).filter((k) => k.startsWith('blobs/'));

  const cases = [
    { name: 'bytes that hash to another digest', index: 0 },
    { name: 'a body cut short of its length', index: 1 },
    { name: 'more bytes than the descriptor says', index: 2 },
    { name: 'a slow drip below the minimum rate', index: 3 },
  ];
  for (const c of cases) {
    test(`${c.name}: the response fails, nothing is stored, no temp file remains`, async () => {
      const before = await stored();
      const digest = image.layerDigests[c.index] as string;
      const outcome: { status: number; bytes: Buffer } | Error = await readAll(
        `${gw.url}/v2/faulty/faults/app/blobs/${digest}`,
      ).catch((err: Error) => err);
      if (!(outcome instanceof Error)) {
        // Failing before the first byte is a proper error status; never a 200 with the wrong bytes.
        assert.notEqual(
          outcome.status,
          200,
          `served ${outcome.bytes.length} bytes hashing to ${sha256(outcome.bytes)}`,
        );
        assert.ok(outcome.status >= 500);
      }
      // stored() waits for the failed fill to end, which removes its staged file.
      assert.deepEqual(await stored(), before);
      assert.deepEqual(tmpFiles(), []);
    });
  }

  test('after a failed fill the next request fetches again (no negative caching)', async () => {
    const digest = image.layerDigests[0] as string;
    const count = () => up.requests.filter((r) => r.url.endsWith(digest)).length;
    const before = count();
    await readAll(`${gw.url}/v2/faulty/faults/app/blobs/${digest}`).catch(() => undefined);
    assert.equal(count(), before + 1);
  });
});
