import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { RateLimiter } from '../../../gateway/auth/rate-limit.js';
import { requestedPulls, TokenIssuer } from '../../../gateway/auth/tokens.js';

const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

describe('gateway-issued tokens', () => {
  test('a replica with the same key accepts the token; another key, service or a late clock does not', () => {
    const k = key();
    let now = 1_800_000_000_000;
    const a = new TokenIssuer(k, 'portcullis', 300, () => now);
    const b = new TokenIssuer(k, 'portcullis', 300, () => now);
    const t = a.issue('alice', ['up/test/app']).token;
    const claims = b.verify(t);
    assert.equal(claims?.user, 'alice');
    assert.deepEqual([...(claims?.pull ?? [])], ['up/test/app']);
    assert.equal(new TokenIssuer(key(), 'portcullis', 300, () => now).verify(t), undefined);
    assert.equal(new TokenIssuer(k, 'other', 300, () => now).verify(t), undefined);
    now += 299_000;
    assert.ok(b.verify(t));
    now += 1000;
    assert.equal(b.verify(t), undefined, 'expired');
    // Issued more than a minute in this replica's future: not believed.
    const early = new TokenIssuer(k, 'portcullis', 300, () => now + 120_000).issue('alice', []).token;
    assert.equal(b.verify(early), undefined);
  });

  test('tampered, unsigned and oversized tokens are refused', () => {
    const issuer = new TokenIssuer(key(), 'portcullis', 300);
    const [h, p, s] = issuer.issue('alice', ['a/b']).token.split('.') as [string, string, string];
    const none = Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url');
    for (const bad of [`${none}.${p}.`, `${h}.${p}`, `${h}.${p}.${s}.x`, `${h}.${p}x.${s}`, 'x'.repeat(9000), '']) {
      assert.equal(issuer.verify(bad), undefined, bad.slice(0, 40));
    }
  });

  test('scopes: pull of repositories only; malformed or too many are an error', () => {
    assert.deepEqual(requestedPulls(['repository:up/a:pull', 'repository:up/b:push,pull', 'repository:up/c:push']), [
      'up/a',
      'up/b',
    ]);
    assert.deepEqual(requestedPulls(['repository:up/a:pull repository:reg.example:5000/x:*', 'registry:catalog:*']), [
      'up/a',
      'reg.example:5000/x',
    ]);
    assert.deepEqual(requestedPulls([]), []);
    for (const bad of [['repository:pull'], ['repository:UP/a:pull'], ['repository:a b:pull'], ['x'.repeat(600)]])
      assert.equal(requestedPulls(bad), 'invalid', bad[0]);
    assert.equal(requestedPulls(Array.from({ length: 33 }, (_, i) => `repository:r${i}:pull`)), 'invalid');
  });
});

describe('rate limits per client', () => {
  test('a burst, then the rate; clients are counted apart; the wait is said in seconds', () => {
    let now = 0;
    const l = new RateLimiter({ perSecond: 2, burst: 3 }, () => now);
    for (let i = 0; i < 3; i++) assert.equal(l.take('user:a'), undefined);
    assert.equal(l.take('user:a'), 1);
    assert.ok(l.exhausted('user:a'));
    assert.equal(l.take('user:b'), undefined, 'another client has its own bucket');
    now += 500;
    assert.equal(l.take('user:a'), undefined, 'one request back after half a second at 2/s');
    assert.equal(l.take('user:a'), 1);
    now += 60_000;
    for (let i = 0; i < 3; i++) assert.equal(l.take('user:a'), undefined, 'never more than the burst saved up');
    assert.equal(l.take('user:a'), 1);
  });
});
