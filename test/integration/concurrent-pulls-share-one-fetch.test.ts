import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  acceptAnythingPolicy,
  serveImage,
  sha256,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

describe('concurrent requests for one cold blob share a single upstream fetch', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  const layer = Buffer.alloc(2 * 1024 * 1024, 3);
  let digest: string;

  before(async () => {
    up = await startFaultRegistry();
    digest = serveImage(up, 'many/app', 'v1', [{ bytes: layer }]).layerDigests[0] as string;
    up.route('GET', `/v2/many/app/blobs/${digest}`, (_req, res) => {
      res.writeHead(200, { 'content-length': layer.length });
      let offset = 0;
      const timer = setInterval(() => {
        res.write(layer.subarray(offset, offset + 128 * 1024));
        offset += 128 * 1024;
        if (offset >= layer.length) {
          clearInterval(timer);
          res.end();
        }
      }, 10);
    });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: many }`,
      policy: acceptAnythingPolicy(),
    });
    const m = await fetch(`${gw.url}/v2/many/many/app/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    await m.arrayBuffer();
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  test('32 clients, one upstream GET, every client gets the verified bytes', async () => {
    const bodies = await Promise.all(
      Array.from({ length: 32 }, async () => {
        const res = await fetch(`${gw.url}/v2/many/many/app/blobs/${digest}`);
        assert.equal(res.status, 200);
        return Buffer.from(await res.arrayBuffer());
      }),
    );
    for (const b of bodies) assert.equal(sha256(b), digest);
    assert.equal(up.requests.filter((r) => r.url.endsWith(digest)).length, 1);
  });

  test('a range request on a cached blob answers 206 with the slice', async () => {
    const res = await fetch(`${gw.url}/v2/many/many/app/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 10-19/${layer.length}`);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), layer.subarray(10, 20));
    const bad = await fetch(`${gw.url}/v2/many/many/app/blobs/${digest}`, {
      headers: { range: `bytes=${layer.length}-` },
    });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${layer.length}`);
    await bad.arrayBuffer();
  });
});
