import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * rateLimit: each client (its user, else its address) gets a burst and then a rate;
 * beyond it, 429 TOOMANYREQUESTS with Retry-After, as registries answer. One user's
 * requests do not use up another's; a client guessing passwords is limited by its
 * address; /healthz and /readyz are not limited.
 */
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('clients are rate-limited', () => {
  let world: SignedWorld;
  const gateways: TestGateway[] = [];
  const dir = tempDir('portcullis-ratelimit-');
  before(async () => {
    world = await buildSignedWorld();
  });
  after(async () => {
    for (const g of gateways) await g.stop();
    await world?.stop();
    dir.cleanup();
  });
  const start = async (extra: string[], files: Record<string, Buffer> = {}) => {
    const gw = await gatewayForWorld(world, { extraConfig: extra.join('\n'), files: { ...files } });
    gateways.push(gw);
    return gw;
  };
  const statuses = async (gw: TestGateway, n: number, path: string, authorization?: string) => {
    const out: { status: number; retryAfter: string | null; reason?: string }[] = [];
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${gw.url}${path}`, { headers: authorization ? { authorization } : {} });
      const body = (await res.json()) as { errors?: { detail?: { reason?: string } }[] };
      out.push({
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        ...(body.errors?.[0]?.detail?.reason ? { reason: body.errors[0].detail.reason } : {}),
      });
    }
    return out;
  };

  test('anonymous clients: a burst, then 429 with Retry-After; health checks go on', async () => {
    const gw = await start(['rateLimit: { perSecond: 1, burst: 3 }']);
    const s = await statuses(gw, 4, '/v2/');
    assert.deepEqual(
      s.map((x) => x.status),
      [200, 200, 200, 429],
    );
    assert.equal(s[3]?.retryAfter, '1');
    assert.equal(s[3]?.reason, 'rate.limited');
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`${gw.url}${path}`);
      assert.equal(res.status, 200, path);
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(
      (await statuses(gw, 1, '/v2/')).map((x) => x.status),
      [200],
      'a second later, one more',
    );
  });

  test('users are counted apart; a password guesser runs out by its address', async () => {
    const htpasswd = join(dir.path, 'htpasswd');
    await run('htpasswd', ['-cbB', htpasswd, 'alice', 'alice-pw-7a']);
    await run('htpasswd', ['-bB', htpasswd, 'bob', 'bob-pw-7b']);
    const gw = await start(
      [
        'rateLimit: { perSecond: 1, burst: 3 }',
        'clientAuth:',
        '  htpasswd: htpasswd',
        '  access:',
        `    - { scope: "${world.registry.host}", users: ["*"] }`,
      ],
      { htpasswd: readFileSync(htpasswd) },
    );
    assert.deepEqual(
      (await statuses(gw, 4, '/v2/', basic('alice', 'alice-pw-7a'))).map((x) => x.status),
      [200, 200, 200, 429],
    );
    assert.deepEqual(
      (await statuses(gw, 1, '/v2/', basic('bob', 'bob-pw-7b'))).map((x) => x.status),
      [200],
      'bob has his own allowance',
    );
    const guesses = await statuses(gw, 4, '/v2/', basic('carol', 'guess'));
    assert.deepEqual(
      guesses.map((x) => x.status),
      [401, 401, 401, 429],
    );
    assert.equal(guesses[3]?.reason, 'rate.limited');
  });
});
