import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy, serveImage, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildImage, pushImage } from '../helpers/images.js';
import { waitFor } from '../helpers/ports.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A hostile upstream that starts the fill of a popular layer digest, drips it and
 * then breaks it must not hold up, or break, the same layer pulled from an honest
 * upstream: fills are never shared across upstreams (or repositories).
 */
describe('blob fills are kept per upstream and repository', () => {
  let honest: TestRegistry;
  let hostile: FaultRegistry;
  let gw: TestGateway;
  let layer: { digest: string; size: number };
  const dir = tempDir('portcullis-fills-');
  let dripping: NodeJS.Timeout | undefined;

  before(async () => {
    honest = await startRegistry();
    const layout = join(dir.path, 'layout');
    await buildImage(layout, 'app', { text: 'fills' });
    await pushImage(layout, 'app', `${honest.host}/team/app:1`);
    const m = (await (
      await fetch(`${honest.url}/v2/team/app/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: { digest: string; size: number }[] };
    layer = m.layers.reduce((a, b) => (b.size > a.size ? b : a));
    hostile = await startFaultRegistry();
    serveImage(hostile, 'team/app', '1', [{ bytes: Buffer.alloc(0), digest: layer.digest, declaredSize: layer.size }]);
    hostile.route('GET', `/v2/team/app/blobs/${layer.digest}`, (_req, res) => {
      res.writeHead(200, { 'content-length': layer.size });
      let sent = 0;
      dripping = setInterval(() => {
        if (sent++ > 40) {
          clearInterval(dripping);
          res.destroy();
          return;
        }
        res.write(Buffer.from([0]));
      }, 100);
    });
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${honest.host}", url: "${honest.url}", prefix: honest }`,
        `  - name: "${hostile.host}"`,
        `    url: "${hostile.url}"`,
        '    prefix: evil',
        '    timeouts: { headersMs: 5000, idleMs: 3000, totalMs: 10000, minBytesPerSecond: 1024 }',
      ].join('\n'),
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    clearInterval(dripping);
    await gw?.stop();
    await hostile?.stop();
    await honest?.stop();
    dir.cleanup();
  });

  test('the honest pull of a layer the hostile upstream is dripping completes at once, with the right bytes', async () => {
    for (const prefix of ['evil', 'honest']) {
      const res = await fetch(`${gw.url}/v2/${prefix}/team/app/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(res.status, 200, prefix);
      await res.arrayBuffer();
    }
    const hostilePull = fetch(`${gw.url}/v2/evil/team/app/blobs/${layer.digest}`).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status === 200 ? 'ended' : 'failed';
      },
      () => 'failed',
    );
    await waitFor(
      async () => hostile.requests.some((r) => r.url.includes(`/blobs/${layer.digest}`)),
      'the hostile fill to start',
    );
    const res = await fetch(`${gw.url}/v2/honest/team/app/blobs/${layer.digest}`);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer.digest);
    const state = await Promise.race([hostilePull, new Promise((r) => setImmediate(() => r('pending')))]);
    assert.equal(state, 'pending', 'the honest pull did not wait for the hostile fill to end');
    assert.equal(await hostilePull, 'failed', 'the hostile fill itself never ends cleanly');
  });
});
