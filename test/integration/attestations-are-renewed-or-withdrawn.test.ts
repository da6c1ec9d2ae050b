import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { RunnerError } from '../../runner/errors.js';
import { hostPlatform } from '../../runner/platform.js';
import { ImageCache } from '../../runner/image-cache.js';
import { pullImage, type PullOptions } from '../../runner/pull.js';
import { runnerPaths } from '../../runner/settings.js';
import { fetchGatewayKey, pinKey } from '../../runner/trust.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import {
  buildSignedWorld,
  getManifest,
  putManifest,
  sigTag,
  worldPolicy,
  type SignedWorld,
} from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';
import { cosignSign } from '../helpers/cosign.js';
import { run } from '../helpers/peers.js';

/**
 * An attestation older than `attestation.renewAfterSeconds` is verified again (its
 * signatures fetched from upstream again) and re-signed when it is next asked for;
 * a cached secure-run run picks the renewed one up, so an image that is still
 * admitted never ages out of --max-age while the laptop is online. An image that
 * fails its renewal is withdrawn; an upstream that is down leaves the stored
 * attestation standing.
 */
const refusal = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof RunnerError ? e.code : `other: ${(e as Error).message}`),
  );

describe('attestations are renewed before they age out, and an image that fails renewal is withdrawn', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const home = tempDir('portcullis-home-');
  const paths = runnerPaths(
    { XDG_CONFIG_HOME: join(home.path, 'config'), XDG_DATA_HOME: join(home.path, 'data') },
    home.path,
  );
  const cache = new ImageCache(join(paths.dataDir, 'images'));
  // Older than 1.5 s is too old for this laptop; the gateway renews after 1 s.
  const opts: PullOptions = { platform: hostPlatform(), maxAgeMs: 1500, pull: 'missing' };
  let trust: ReturnType<typeof pinKey>;
  const endpoint = (repo: string, digest: string) =>
    `${gw.url}/v2/${repo}/_portcullis/attestation/${digest}?ns=${world.registry.host}`;

  before(async () => {
    world = await buildSignedWorld();
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
      extraConfig: 'attestation:\n  renewAfterSeconds: 1',
    });
    const offered = await fetchGatewayKey(gw.url);
    trust = pinKey(paths, offered, { expected: offered.fingerprint });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    home.cleanup();
  });

  test('a cached run whose attestation is past --max-age gets a renewed one from the gateway', async () => {
    const image = `${world.registry.host}/test/signed:1`;
    const first = await pullImage(trust, cache, image, opts);
    await sleep(1700);
    assert.equal(await refusal(pullImage(trust, cache, image, { ...opts, pull: 'never' })), 'ATTESTATION_EXPIRED');
    const second = await pullImage(trust, cache, image, opts);
    assert.equal(second.manifestDigest.text, world.digests.signed);
    assert.ok(second.summary.timeVerified > first.summary.timeVerified, 'a new attestation was signed');
    const decided = gw.logs.filter((l) => l.event === 'decision' && l.digest === world.digests.signed && l.allowed);
    assert.ok(decided.length >= 2, 'the renewal decided the image again');
    // The renewed attestation is in the cache: offline, it stands on its own.
    const offline = await pullImage(trust, cache, image, { ...opts, pull: 'never' });
    assert.equal(offline.summary.timeVerified.getTime(), second.summary.timeVerified.getTime());
  });

  test('--pull always gets a renewed attestation as well', async () => {
    const image = `${world.registry.host}/test/signed:1`;
    const before = await pullImage(trust, cache, image, { ...opts, pull: 'never', maxAgeMs: 60_000 });
    await sleep(1100);
    const after = await pullImage(trust, cache, image, { ...opts, pull: 'always' });
    assert.ok(after.summary.timeVerified > before.summary.timeVerified);
  });

  /** Alters the upstream's cosign signature of `digest` after its admission. */
  const tamperSignature = async (repo: string, digest: string) => {
    const sig = JSON.parse((await getManifest(world.registry.url, repo, sigTag(digest), {})).toString()) as {
      layers: { annotations: Record<string, string> }[];
    };
    const layer = sig.layers[0] as { annotations: Record<string, string> };
    const raw = Buffer.from(layer.annotations['dev.cosignproject.cosign/signature'] ?? '', 'base64');
    raw[raw.length - 3] = (raw[raw.length - 3] ?? 0) ^ 0x01;
    layer.annotations['dev.cosignproject.cosign/signature'] = raw.toString('base64');
    await putManifest(world.registry.url, repo, sigTag(digest), Buffer.from(JSON.stringify(sig)), {});
  };
  const copy = (from: string, to: string) =>
    run('skopeo', [
      '--insecure-policy',
      'copy',
      '--preserve-digests',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${world.registry.host}/${from}`,
      `docker://${world.registry.host}/${to}`,
    ]);

  test('a tag moved back to an older signed image is refused, though renewal gave the old image a fresh attestation', async () => {
    await copy('test/signed:1', 'test/moving:old');
    await copy('test/docker:1', 'test/moving:new');
    for (const d of [world.digests.signed, world.digests.docker])
      await cosignSign(world.trusted, `${world.registry.host}/test/moving@${d}`);
    const image = `${world.registry.host}/test/moving:1`;
    const always = { ...opts, pull: 'always' as const, maxAgeMs: 60_000 };
    await copy('test/moving:old', 'test/moving:1');
    assert.equal((await pullImage(trust, cache, image, always)).manifestDigest.text, world.digests.signed);
    await sleep(50);
    await copy('test/moving:new', 'test/moving:1');
    assert.equal((await pullImage(trust, cache, image, always)).manifestDigest.text, world.digests.docker);
    // Back to the old image, once its attestation is due for renewal (so it is signed anew).
    await copy('test/moving:old', 'test/moving:1');
    await sleep(1100);
    assert.equal(await refusal(pullImage(trust, cache, image, always)), 'ATTESTATION_EXPIRED');
    // By digest, the old image is still there to run on purpose.
    const byDigest = `${world.registry.host}/test/moving@${world.digests.signed}`;
    assert.equal((await pullImage(trust, cache, byDigest, always)).manifestDigest.text, world.digests.signed);
  });

  test("a platform manifest admitted through its index is withdrawn when the index's signature fails at renewal", async () => {
    const image = `${world.registry.host}/test/multi:1`;
    const first = await pullImage(trust, cache, image, { ...opts, maxAgeMs: 60_000 });
    await tamperSignature('test/multi', world.digests.multi);
    await sleep(1100);
    assert.equal(await refusal(pullImage(trust, cache, image, { ...opts, maxAgeMs: 60_000 })), 'IMAGE_DENIED');
    assert.ok(gw.logs.some((l) => l.event === 'admission.withdrawn' && l.digest === world.digests.multi));
    const res = await fetch(endpoint('test/multi', first.manifestDigest.text));
    assert.equal(res.status, 403);
  });

  test('an image whose signature fails at renewal is withdrawn: 403 with its reason, and a cached run is refused', async () => {
    const image = `${world.registry.host}/test/signed:1`;
    await pullImage(trust, cache, image, opts);
    await tamperSignature('test/signed', world.digests.signed);
    await sleep(1100);
    const res = await fetch(endpoint('test/signed', world.digests.signed));
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: { code: string; detail?: { reason?: string } }[] };
    assert.equal(body.errors[0]?.code, 'DENIED');
    assert.equal(typeof body.errors[0]?.detail?.reason, 'string');
    assert.ok(gw.logs.some((l) => l.event === 'admission.withdrawn' && l.digest === world.digests.signed));
    // Withdrawn: the manifest itself is decided again, and denied.
    const m = await fetch(`${gw.url}/v2/up/test/signed/manifests/${world.digests.signed}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 403);
    // The laptop learns it on its next run, and forgets the entry.
    assert.equal(await refusal(pullImage(trust, cache, image, { ...opts, maxAgeMs: 60_000 })), 'IMAGE_DENIED');
    assert.equal(await refusal(pullImage(trust, cache, image, { ...opts, pull: 'never' })), 'NOT_CACHED');
  });

  test('an upstream that is down at renewal leaves the stored attestation standing', async () => {
    const image = `${world.registry.host}/test/docker:1`;
    const first = await pullImage(trust, cache, image, { ...opts, maxAgeMs: 60_000 });
    const stored = Buffer.from(await (await fetch(endpoint('test/docker', world.digests.docker))).arrayBuffer());
    await world.registry.stop();
    await sleep(1100);
    const res = await fetch(endpoint('test/docker', world.digests.docker));
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), stored);
    assert.ok(gw.logs.some((l) => l.event === 'attestation.renewal_failed' && l.digest === world.digests.docker));
    const again = await pullImage(trust, cache, image, { ...opts, maxAgeMs: 60_000 });
    assert.equal(again.summary.timeVerified.getTime(), first.summary.timeVerified.getTime());
  });
});
