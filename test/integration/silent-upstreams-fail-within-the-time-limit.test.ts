import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy, serveImage, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * A silent or slow upstream fails a client's request within the upstream's
 * `totalMs`, every upstream call and retry included (a time-out is not tried
 * again); the error names the upstream and the cause; the log line is a warning
 * without a stack trace.
 */
describe('silent upstreams fail within the time limit, and say who and why', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  const held: ServerResponse[] = [];
  const TOTAL_MS = 3000;

  before(async () => {
    up = await startFaultRegistry();
    for (const method of ['GET', 'HEAD'])
      up.route(method, '/v2/silent/app/manifests/1', (_req, res) => void held.push(res));
    // Each answer alone is within the limits, the two a pull needs (HEAD, then GET) are not.
    const image = serveImage(up, 'slow/app', 'x', [{ bytes: Buffer.from('slow') }]);
    for (const method of ['GET', 'HEAD']) {
      up.route(method, '/v2/slow/app/manifests/1', (req, res) => {
        const t = setTimeout(() => {
          res.writeHead(200, {
            'content-type': 'application/vnd.oci.image.manifest.v1+json',
            'content-length': image.manifest.length,
          });
          res.end(req.method === 'HEAD' ? undefined : image.manifest);
        }, 1800);
        res.on('close', () => clearTimeout(t));
      });
    }
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - name: "${up.host}"`,
        `    url: "${up.url}"`,
        '    prefix: up',
        `    timeouts: { headersMs: 2000, idleMs: 2000, totalMs: ${TOTAL_MS}, minBytesPerSecond: 1 }`,
      ].join('\n'),
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    for (const r of held) r.destroy();
    await gw?.stop();
    await up?.stop();
  });

  const attempts = (path: string) => up.requests.filter((r) => r.url.startsWith(path)).length;

  test('a silent upstream: 504 naming the upstream and the cause, one attempt, a warning without a stack', async () => {
    const started = Date.now();
    const res = await fetch(`${gw.url}/v2/up/silent/app/manifests/1`);
    const elapsed = Date.now() - started;
    assert.equal(res.status, 504);
    const e = ((await res.json()) as { errors: { code: string; message: string; detail: Record<string, string> }[] })
      .errors[0];
    assert.equal(e?.detail.reason, 'upstream.timeout');
    assert.equal(e?.detail.upstream, up.host);
    assert.ok(e?.message.includes(up.host), e?.message);
    assert.match(e?.message ?? '', /did not answer HEAD \/v2\/silent\/app\/manifests\/1/);
    assert.equal(attempts('/v2/silent/app/manifests/1'), 1, 'a time-out is not tried again');
    assert.ok(elapsed < TOTAL_MS + 1500, `the request took ${elapsed} ms, past its ${TOTAL_MS} ms limit`);
    const line = gw.logs.find((l) => l.msg === 'upstream failed' && l.code === 'UPSTREAM_TIMEOUT');
    assert.ok(line, 'the failure is logged');
    assert.equal(line.level, 40, 'as a warning');
    assert.equal(JSON.stringify(line).includes('"stack"'), false, 'without a stack trace');
  });

  test('the whole request is bounded: two slow answers that each fit the limit do not add up past it', async () => {
    const started = Date.now();
    const res = await fetch(`${gw.url}/v2/up/slow/app/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const elapsed = Date.now() - started;
    assert.equal(res.status, 504);
    const e = ((await res.json()) as { errors: { message: string; detail: Record<string, string> }[] }).errors[0];
    assert.equal(e?.detail.reason, 'upstream.timeout');
    assert.match(e?.message ?? '', /time limit/);
    assert.ok(elapsed < TOTAL_MS + 1500, `the request took ${elapsed} ms, past its ${TOTAL_MS} ms limit`);
  });

  test('an upstream that is not there: 502 naming the upstream and ECONNREFUSED', async () => {
    const gone = await startFaultRegistry();
    const host = gone.host;
    await gone.stop();
    const other = await startTestGateway({
      upstreamsYaml: `  - { name: "${host}", url: "http://${host}", prefix: gone }`,
      policy: acceptAnythingPolicy(),
    });
    try {
      const res = await fetch(`${other.url}/v2/gone/app/manifests/1`);
      assert.equal(res.status, 502);
      const e = ((await res.json()) as { errors: { message: string; detail: Record<string, string> }[] }).errors[0];
      assert.equal(e?.detail.reason, 'upstream.unavailable');
      assert.ok(e?.message.includes(host));
      assert.match(e?.message ?? '', /ECONNREFUSED/);
    } finally {
      await other.stop();
    }
  });
});
