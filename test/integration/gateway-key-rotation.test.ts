import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RunnerError } from '../../runner/errors.js';
import { hostPlatform } from '../../runner/platform.js';
import { ImageCache } from '../../runner/image-cache.js';
import { pullImage, type PullOptions } from '../../runner/pull.js';
import { readTrust, runnerPaths, type Trust } from '../../runner/settings.js';
import { fetchGatewayKey, pinKey } from '../../runner/trust.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A rotation of the gateway's attestation key: attestations are stored per signing
 * key set, so the gateway never serves one signed only by a key it no longer uses.
 *   1. key A: clients pin A.
 *   2. key B with previousKeys [A]: every attestation is re-signed by B and A; clients
 *      pinned to A keep working, clients pinned to B work, gateway.json lists A.
 *   3. key B alone: clients still pinned to A are refused (TRUST_MISMATCH, with the
 *      re-pin command), and work again after `secure-run trust`.
 */
const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof RunnerError ? e.code : `other: ${String(e)}`),
  );

describe("a rotation of the gateway's attestation key", () => {
  let world: SignedWorld;
  let gw: TestGateway | undefined;
  const data = tempDir('portcullis-gwdata-');
  const keys = tempDir('portcullis-keys-');
  const a = join(keys.path, 'a.key');
  const b = join(keys.path, 'b.key');
  const oldPin = secureRunHome();
  const newHome = tempDir('portcullis-home-');
  const opts: PullOptions = { platform: hostPlatform(), maxAgeMs: 86_400_000, pull: 'missing' };
  let image: string;

  const start = async (attestation: string) => {
    // Restarted on the same port: the clients' pins name its URL.
    const port = gw?.running.port;
    await gw?.stop();
    gw = await startTestGateway({
      ...(port !== undefined ? { port } : {}),
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
      dataDir: data.path,
      extraConfig: attestation,
    });
    return gw;
  };
  const oldPaths = runnerPaths(oldPin.env, oldPin.home.path);
  const oldCache = new ImageCache(join(oldPaths.dataDir, 'images'));
  const newPaths = runnerPaths(
    { XDG_CONFIG_HOME: join(newHome.path, 'c'), XDG_DATA_HOME: join(newHome.path, 'd') },
    newHome.path,
  );
  const newCache = new ImageCache(join(newPaths.dataDir, 'images'));

  before(async () => {
    for (const path of [a, b]) {
      const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      });
      writeFileSync(path, pem, { mode: 0o600 });
    }
    world = await buildSignedWorld();
    image = `${world.registry.host}/test/signed:1`;
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    for (const d of [data, keys, oldPin.home, newHome]) d.cleanup();
  });

  test('1. key A: a client pins A and runs', async () => {
    const g = await start(`attestation:\n  key: ${JSON.stringify(a)}`);
    const pinned = await oldPin.sr('trust', g.url, '--fingerprint', await gatewayFingerprint(g.url));
    assert.equal(pinned.status, 0, pinned.stderr);
    await pullImage(readTrust(oldPaths), oldCache, image, opts);
  });

  test('2. key B with previousKeys [A]: both pins verify, and re-pinning says it is a rotation', async () => {
    const g = await start(`attestation:\n  key: ${JSON.stringify(b)}\n  previousKeys: [${JSON.stringify(a)}]`);
    const doc = (await (await fetch(`${g.url}/v2/_portcullis/gateway.json`)).json()) as {
      fingerprint: string;
      previousKeys: { fingerprint: string }[];
    };
    const oldTrust = readTrust(oldPaths);
    assert.deepEqual(
      doc.previousKeys.map((k) => k.fingerprint),
      [oldTrust.fingerprint],
    );
    // The cached run asks the gateway: its attestation is now signed by B and A.
    const cached = await pullImage(oldTrust, oldCache, image, opts);
    assert.equal(cached.manifestDigest.text, world.digests.signed);
    const env = JSON.parse(
      readFileSync(join(oldPaths.dataDir, 'images', 'blobs', 'sha256', latestEnvelope(oldPaths.dataDir)), 'utf8'),
    ) as { signatures: unknown[] };
    assert.equal(env.signatures.length, 2);
    const offered = await fetchGatewayKey(g.url);
    const newTrust: Trust = pinKey(newPaths, offered, { expected: doc.fingerprint });
    await pullImage(newTrust, newCache, image, { ...opts, pull: 'always' });
    const repin = await oldPin.sr('trust', g.url, '--fingerprint', doc.fingerprint);
    assert.equal(repin.status, 0, repin.stderr);
    assert.match(repin.stdout, /replaces the pinned key/);
    assert.match(repin.stdout, /rotating/);
    // Back to A for step 3 (as a laptop that missed the rotation window).
    pinKey(
      oldPaths,
      { gateway: oldTrust.gateway, publicKeyPem: oldTrust.publicKeyPem, fingerprint: oldTrust.fingerprint },
      { confirmed: true },
    );
  });

  test('3. key B alone: a client still pinned to A is refused, and runs again once it re-pins', async () => {
    const g = await start(`attestation:\n  key: ${JSON.stringify(b)}`);
    assert.equal(await codeOf(pullImage(readTrust(oldPaths), oldCache, image, opts)), 'TRUST_MISMATCH');
    assert.equal(
      await codeOf(pullImage(readTrust(oldPaths), oldCache, image, { ...opts, pull: 'always' })),
      'ATTESTATION_INVALID',
    );
    assert.equal(await codeOf(pullImage(readTrust(newPaths), newCache, image, opts)), undefined);
    const repin = await oldPin.sr('trust', g.url, '--fingerprint', await gatewayFingerprint(g.url));
    assert.equal(repin.status, 0, repin.stderr);
    assert.equal(await codeOf(pullImage(readTrust(oldPaths), oldCache, image, opts)), undefined);
  });
});

/** The envelope the cache's only reference uses now. */
function latestEnvelope(dataDir: string): string {
  const refs = join(dataDir, 'images', 'refs');
  const [file] = readdirSync(refs);
  const doc = JSON.parse(readFileSync(join(refs, file as string), 'utf8')) as { envelope: string };
  return doc.envelope.replace('sha256:', '');
}
