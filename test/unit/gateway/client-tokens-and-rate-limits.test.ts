import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { describe, test } from 'node:test';
import { ClientAuth, SignInBusy } from '../../../gateway/auth/client-auth.js';
import { RateLimiter } from '../../../gateway/auth/rate-limit.js';
import { addressOf } from '../../../gateway/http/client-access.js';
import { LoadError } from '../../../policies/errors.js';
import { requestedPulls, TokenIssuer } from '../../../gateway/auth/tokens.js';

const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

describe('gateway-issued tokens', () => {
  test('a replica with the same key accepts the token; another key, service or a late clock does not', () => {
    const k = key();
    let now = 1_800_000_000_000;
    const a = new TokenIssuer(k, 'portcullis', 300, () => now);
    const b = new TokenIssuer(k, 'portcullis', 300, () => now);
    const t = a.issue('alice', 'e1', ['up/test/app']).token;
    const claims = b.verify(t);
    assert.equal(claims?.user, 'alice');
    assert.equal(claims?.entry, 'e1');
    assert.throws(() => a.issue('', 'e1', []), 'never a token for no user');
    assert.deepEqual([...(claims?.pull ?? [])], ['up/test/app']);
    assert.equal(new TokenIssuer(key(), 'portcullis', 300, () => now).verify(t), undefined);
    assert.equal(new TokenIssuer(k, 'other', 300, () => now).verify(t), undefined);
    now += 299_000;
    assert.ok(b.verify(t));
    now += 1000;
    assert.equal(b.verify(t), undefined, 'expired');
    // Issued more than a minute in this replica's future: not believed.
    const early = new TokenIssuer(k, 'portcullis', 300, () => now + 120_000).issue('alice', 'e1', []).token;
    assert.equal(b.verify(early), undefined);
  });

  test('tampered, unsigned and oversized tokens are refused', () => {
    const issuer = new TokenIssuer(key(), 'portcullis', 300);
    const [h, p, s] = issuer.issue('alice', 'e1', ['a/b']).token.split('.') as [string, string, string];
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
    assert.equal(l.take('user:b'), undefined, 'another client has its own bucket');
    now += 500;
    assert.equal(l.take('user:a'), undefined, 'one request back after half a second at 2/s');
    assert.equal(l.take('user:a'), 1);
    now += 60_000;
    for (let i = 0; i < 3; i++) assert.equal(l.take('user:a'), undefined, 'never more than the burst saved up');
    assert.equal(l.take('user:a'), 1);
  });
});

describe('password checks', () => {
  const withHtpasswd = (lines: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-htpasswd-'));
    writeFileSync(join(dir, 'htpasswd'), lines.join('\n'));
    const cfg = { htpasswd: join(dir, 'htpasswd'), tokens: undefined, certificates: false, groups: {}, access: [] };
    return { load: () => ClientAuth.load(cfg), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  };
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  test('costs outside 4-14 are refused at start; a changed password changes the entry tokens carry', () => {
    for (const cost of [15, 16]) {
      const f = withHtpasswd([`a:${bcrypt.hashSync('x', 4).replace('$04$', `$${cost}$`)}`]);
      assert.throws(f.load, (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID', String(cost));
      f.cleanup();
    }
    const one = withHtpasswd([`alice:${bcrypt.hashSync('one', 4)}`]);
    const two = withHtpasswd([`alice:${bcrypt.hashSync('two', 4)}`]);
    try {
      assert.notEqual(one.load().entryOf('alice'), two.load().entryOf('alice'));
      assert.equal(one.load().entryOf('bob'), undefined);
    } finally {
      one.cleanup();
      two.cleanup();
    }
  });

  test('an unknown user costs a bcrypt check too; checks beyond the queue are refused, not piled up', async () => {
    const f = withHtpasswd([`alice:${bcrypt.hashSync('pw', 8)}`]);
    try {
      const auth = f.load();
      const time = async (h: string) => {
        const t = process.hrtime.bigint();
        assert.equal(await auth.authenticate(h), undefined);
        return Number(process.hrtime.bigint() - t) / 1e6;
      };
      const known = await time(basic('alice', 'wrong'));
      const unknown = await time(basic('nobody', 'wrong'));
      assert.ok(unknown > known / 3, `unknown ${unknown} ms vs known ${known} ms`);
      assert.equal(auth.remembered(basic('nobody', 'wrong')), null, 'a refusal is remembered a little while');
      const all = await Promise.allSettled(
        Array.from({ length: 100 }, (_, i) => auth.authenticate(basic('alice', `guess-${i}`))),
      );
      const busy = all.filter((r) => r.status === 'rejected' && r.reason instanceof SignInBusy).length;
      assert.equal(busy, 100 - 2 - 64);
    } finally {
      f.cleanup();
    }
  });

  test('clients without a user are counted by IPv4 address, or by IPv6 /64', () => {
    assert.equal(addressOf('127.0.0.1'), 'address:127.0.0.1');
    assert.equal(addressOf('::ffff:10.1.2.3'), 'address:10.1.2.3');
    assert.equal(addressOf('2001:db8:1:2:aaaa::1'), addressOf('2001:db8:1:2:ffff::9'));
    assert.notEqual(addressOf('2001:db8:1:2::1'), addressOf('2001:db8:1:3::1'));
  });
});
