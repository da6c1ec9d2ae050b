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

describe('a blob redirected to storage elsewhere is fetched without the registry credentials', () => {
  let up: FaultRegistry;
  let storage: FaultRegistry;
  let gw: TestGateway;
  const layer = Buffer.from('stored elsewhere');
  let digest: string;
  let other: string;
  const expected = `Basic ${Buffer.from('carol:pw-carol').toString('base64')}`;

  before(async () => {
    up = await startFaultRegistry();
    storage = await startFaultRegistry();
    digest = serveImage(up, 'redir/app', 'v1', [{ bytes: layer }]).layerDigests[0] as string;
    // Every registry request needs basic credentials; the blob answers 307 to the storage server.
    const guard =
      (next: Parameters<FaultRegistry['route']>[2]): Parameters<FaultRegistry['route']>[2] =>
      (req, res) => {
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
          return;
        }
        next(req, res);
      };
    up.route(
      'GET',
      `/v2/redir/app/blobs/${digest}`,
      guard((_req, res) => {
        res.writeHead(307, { location: `${storage.url}/bucket/${digest.slice(7)}?sig=abc` }).end();
      }),
    );
    other = serveImage(up, 'redir/other', 'v1', [{ bytes: Buffer.from('another layer') }]).layerDigests[0] as string;
    up.route(
      'GET',
      `/v2/redir/other/blobs/${other}`,
      guard((_req, res) => {
        res.writeHead(307, { location: `${storage.url}/bucket/${other.slice(7)}` }).end();
      }),
    );
    storage.route('GET', `/bucket/${digest.slice(7)}`, (_req, res) =>
      res.writeHead(200, { 'content-length': layer.length }).end(layer),
    );
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${up.host}", url: "${up.url}", prefix: redir, username: carol, passwordEnv: TEST_REDIRECT_PASSWORD, redirectOrigins: ["${storage.url}"] }`,
        `  - { name: "unlisted.invalid", url: "${up.url}", prefix: unlisted, username: carol, passwordEnv: TEST_REDIRECT_PASSWORD }`,
      ].join('\n'),
      policy: acceptAnythingPolicy(),
      env: { ...process.env, TEST_REDIRECT_PASSWORD: 'pw-carol' },
    });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
    await storage?.stop();
  });

  test('the bytes arrive, verified; the storage server never sees Authorization', async () => {
    const m = await fetch(`${gw.url}/v2/redir/redir/app/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    await m.arrayBuffer();
    const res = await fetch(`${gw.url}/v2/redir/redir/app/blobs/${digest}`);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0]?.headers.authorization, undefined);
  });

  test('a redirect to an origin that is not configured (here: plain http on loopback) is refused', async () => {
    const m = await fetch(`${gw.url}/v2/unlisted/redir/other/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    await m.arrayBuffer();
    const before = storage.requests.length;
    const res = await fetch(`${gw.url}/v2/unlisted/redir/other/blobs/${other}`);
    assert.equal(res.status, 502);
    assert.equal(
      ((await res.json()) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason,
      'upstream.redirect_rejected',
    );
    assert.equal(storage.requests.length, before);
  });
});
