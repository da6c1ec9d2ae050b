import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseDigest } from '../../oci/digest.js';
import { askGatewayAbout, type GatewayAnswer } from '../../runner/gateway-check.js';
import { json, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { freePort } from '../helpers/ports.js';

/**
 * What a hostile network or a broken gateway can answer a cached run's one question
 * (faults a real gateway does not produce, so an in-process server plays it): only a
 * 403 or another 4xx is a refusal; everything else — oversized, slow, 5xx, a redirect,
 * no connection — counts as offline and leaves the cached attestation to its --max-age.
 */
const D = parseDigest(`sha256:${'a'.repeat(64)}`);
const PATH = `/v2/team/app/_portcullis/attestation/${D.text}`;

const kind = (a: GatewayAnswer): string =>
  'envelope' in a
    ? 'envelope'
    : 'refused' in a
      ? `refused ${a.refused.code} ${a.refused.reason ?? ''}`.trim()
      : `offline ${a.unreachable.code}`;

describe("a cached run's question to the gateway", () => {
  let fake: FaultRegistry;
  const ask = (timeoutMs = 500) =>
    askGatewayAbout({ gateway: fake.url }, { host: 'reg.example', repository: 'team/app' }, D, timeoutMs);

  before(async () => {
    fake = await startFaultRegistry();
  });
  after(async () => {
    await fake.stop();
  });

  test('200: the envelope, asked for with ?ns= naming the registry', async () => {
    fake.route('GET', PATH, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    assert.equal(kind(await ask()), 'envelope');
    assert.match(fake.requests.at(-1)?.url ?? '', /\?ns=reg\.example$/);
  });

  test("403 and 404 are refusals in the gateway's words", async () => {
    fake.route('GET', PATH, (_req, res) =>
      json(res, 403, { errors: [{ code: 'DENIED', message: 'revoked', detail: { reason: 'policy.revoked' } }] }),
    );
    assert.equal(kind(await ask()), 'refused IMAGE_DENIED policy.revoked');
    fake.route('GET', PATH, (_req, res) => json(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'no' }] }));
    assert.equal(kind(await ask()), 'refused IMAGE_UNAVAILABLE');
  });

  test('oversized, slow, 5xx, 429 and redirects count as offline', async () => {
    const cases: [string, (res: import('node:http').ServerResponse) => void][] = [
      ['declared too large', (res) => res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) }).end()],
      [
        'streamed too large',
        (res) => {
          res.writeHead(200);
          const chunk = Buffer.alloc(1024 * 1024, 0x61);
          for (let i = 0; i < 40; i++) res.write(chunk);
          res.end();
        },
      ],
      ['silent', () => undefined],
      ['500', (res) => json(res, 500, { errors: [{ code: 'UNKNOWN', message: 'x' }] })],
      ['429', (res) => res.writeHead(429).end()],
      ['302', (res) => res.writeHead(302, { location: 'http://127.0.0.1:9/' }).end()],
    ];
    for (const [what, answer] of cases) {
      fake.route('GET', PATH, (_req, res) => answer(res));
      const started = Date.now();
      assert.equal(kind(await ask(300)), 'offline GATEWAY_UNREACHABLE', what);
      assert.ok(Date.now() - started < 2000, `${what}: bounded by the time limit`);
    }
  });

  test('no gateway listening: offline', async () => {
    const port = await freePort();
    const a = await askGatewayAbout(
      { gateway: `http://127.0.0.1:${port}` },
      { host: 'r', repository: 'team/app' },
      D,
      500,
    );
    assert.equal(kind(a), 'offline GATEWAY_UNREACHABLE');
  });
});
