import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { RunnerError } from '../../runner/errors.js';
import { hostPlatform } from '../../runner/platform.js';
import { ImageCache } from '../../runner/image-cache.js';
import { pullImage, type PullOptions } from '../../runner/pull.js';
import { readTrust, runnerPaths } from '../../runner/settings.js';
import { cosignKeyPair } from '../helpers/cosign.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';
import { startWorldGateway, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import type { TestGateway } from '../helpers/gateway.js';

/**
 * A run from the cache (`--pull missing`) asks the reachable gateway, in one request,
 * whether it still attests the cached digest: a revocation, or a key taken out of the
 * policy, refuses the next run. With the gateway unreachable the cached attestation
 * stands on its own within --max-age. `secure-run verify` is that same check.
 */
const refused = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof RunnerError ? { code: e.code, reason: e.reason } : { code: `other: ${String(e)}` }),
  );

describe('revocations reach cached runs while the gateway is reachable', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, env, sr } = secureRunHome();
  const paths = runnerPaths(env, home.path);
  const cache = new ImageCache(join(paths.dataDir, 'images'));
  const opts: PullOptions = { platform: hostPlatform(), maxAgeMs: 86_400_000, pull: 'missing' };
  let signed: string;
  let docker: string;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    signed = `${world.registry.host}/test/signed:1`;
    docker = `${world.registry.host}/test/docker:1`;
    const pinned = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(pinned.status, 0, pinned.stderr);
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  test('secure-run verify makes the check of a run: it refuses an attestation older than the one already used', async () => {
    const ok = await sr('verify', signed);
    assert.equal(ok.status, 0, ok.stderr);
    // The cache says a newer attestation was already used for this reference (as after a renewal).
    const refs = join(paths.dataDir, 'images', 'refs');
    const [file] = readdirSync(refs);
    assert.ok(file, 'verify recorded the reference');
    const entry = JSON.parse(readFileSync(join(refs, file), 'utf8')) as Record<string, string>;
    writeFileSync(
      join(refs, file),
      JSON.stringify({ ...entry, verifiedAt: new Date(Date.now() + 3_600_000).toISOString() }),
    );
    const rolledBack = await sr('verify', signed);
    assert.equal(rolledBack.status, 125);
    assert.match(rolledBack.stderr, /\[ATTESTATION_EXPIRED\]/);
    writeFileSync(join(refs, file), JSON.stringify(entry));
  });

  test('a digest revoked at the gateway is refused by the next cached run, and the entry is forgotten', async (t) => {
    const trust = readTrust(paths);
    await pullImage(trust, cache, signed, opts);
    await pullImage(trust, cache, docker, opts);
    const t0 = performance.now();
    await pullImage(trust, cache, signed, opts);
    t.diagnostic(`a cached check with the gateway's answer took ${(performance.now() - t0).toFixed(1)} ms`);
    const policyFile = join(gw.dir, 'policy.yaml');
    writeFileSync(policyFile, `${worldPolicy(world.registry.host)}revoked:\n  - ${world.digests.signed}\n`);
    assert.equal(await gw.running.reloadPolicy('test'), true);
    const r = await refused(pullImage(trust, cache, signed, opts));
    assert.deepEqual(r, { code: 'IMAGE_DENIED', reason: 'policy.revoked' });
    assert.equal((await refused(pullImage(trust, cache, signed, { ...opts, pull: 'never' })))?.code, 'NOT_CACHED');
    // Not revoked: still runs from the cache.
    assert.equal(await refused(pullImage(trust, cache, docker, opts)), undefined);
  });

  test('a key taken out of the policy refuses the next cached run of what it signed', async () => {
    const trust = readTrust(paths);
    const other = await cosignKeyPair(gw.dir, 'replacement');
    writeFileSync(join(gw.dir, 'trusted.pub'), readFileSync(other.pub));
    assert.equal(await gw.running.reloadPolicy('test'), true);
    const r = await refused(pullImage(trust, cache, docker, opts));
    assert.equal(r?.code, 'IMAGE_DENIED');
    assert.equal(typeof r?.reason, 'string');
    writeFileSync(join(gw.dir, 'trusted.pub'), readFileSync(world.trusted.pub));
    writeFileSync(join(gw.dir, 'policy.yaml'), worldPolicy(world.registry.host));
    assert.equal(await gw.running.reloadPolicy('test'), true);
  });

  test('with the gateway stopped, a cached run stands on its cached attestation and says so', async () => {
    const trust = readTrust(paths);
    await pullImage(trust, cache, docker, opts);
    await gw.stop();
    stop = () => world.stop();
    const lines: string[] = [];
    const offline = await pullImage(trust, cache, docker, { ...opts, warn: (l) => lines.push(l) });
    assert.equal(offline.manifestDigest.text, world.digests.docker);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /cached/);
    // Past --max-age, and no gateway to renew it: refused.
    const late = await refused(
      pullImage(trust, cache, docker, { ...opts, now: new Date(Date.now() + 2 * 86_400_000) }),
    );
    assert.equal(late?.code, 'ATTESTATION_EXPIRED');
  });
});
