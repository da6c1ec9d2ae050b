import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy, json, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

describe('429 and 5xx from an upstream are retried a bounded number of times, then reported', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  before(async () => {
    up = await startFaultRegistry();
    for (const method of ['GET', 'HEAD']) {
      up.route(method, '/v2/busy/app/manifests/1', (_req, res) => {
        res.setHeader('retry-after', '0');
        json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] });
      });
      up.route(method, '/v2/broken/app/manifests/1', (_req, res) =>
        json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'down' }] }),
      );
      up.route(method, '/v2/huge/app/manifests/1', (_req, res) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(Buffer.alloc(2 * 1024 * 1024, 'x'));
      });
    }
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: flaky }`,
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  const attempts = (path: string) => up.requests.filter((r) => r.url.startsWith(path)).length;

  test('429: three attempts, then 429 TOOMANYREQUESTS to the client', async () => {
    const res = await fetch(`${gw.url}/v2/flaky/busy/app/manifests/1`);
    assert.equal(res.status, 429);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'TOOMANYREQUESTS');
    assert.equal(attempts('/v2/busy/app/manifests/1'), 3);
  });

  test('503: three attempts, then 502 UNAVAILABLE', async () => {
    const res = await fetch(`${gw.url}/v2/flaky/broken/app/manifests/1`);
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
    assert.equal(attempts('/v2/broken/app/manifests/1'), 3);
  });

  test('an oversized error body is not buffered', async () => {
    const res = await fetch(`${gw.url}/v2/flaky/huge/app/manifests/1`);
    assert.equal(res.status, 502);
    await res.arrayBuffer();
  });
});
