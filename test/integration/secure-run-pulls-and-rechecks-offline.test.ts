import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDigest } from '../../oci/digest.js';
import { RunnerError } from '../../runner/errors.js';
import { hostPlatform } from '../../runner/platform.js';
import { ImageCache } from '../../runner/image-cache.js';
import { pullImage, type PullOptions } from '../../runner/pull.js';
import { runnerPaths } from '../../runner/settings.js';
import { fetchGatewayKey, pinKey } from '../../runner/trust.js';
import {
  serveGatewayAttestation,
  serveImage,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import type { TestGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/tmp.js';

const DAY = 86_400_000;
const refusal = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof RunnerError ? e.code : `other: ${(e as Error).message}`),
  );

describe('secure-run pulls through the gateway and checks the attestation again on every run, offline too', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const home = tempDir('portcullis-home-');
  const paths = runnerPaths(
    { XDG_CONFIG_HOME: join(home.path, 'config'), XDG_DATA_HOME: join(home.path, 'data') },
    home.path,
  );
  const cache = new ImageCache(join(paths.dataDir, 'images'));
  const opts: PullOptions = { platform: hostPlatform(), maxAgeMs: 30 * DAY, pull: 'missing' };
  let trust: ReturnType<typeof pinKey>;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    const offered = await fetchGatewayKey(gw.url);
    trust = pinKey(paths, offered, { expected: offered.fingerprint });
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  test('online: the image is resolved, attested, and every blob lands in the cache verified', async () => {
    const pulled = await pullImage(trust, cache, `${world.registry.host}/test/signed:1`, opts);
    assert.equal(pulled.manifestDigest.text, world.digests.signed);
    for (const d of [pulled.manifest.config, ...pulled.layers]) assert.ok(cache.has(d.digest, d.size));
    await pullImage(trust, cache, `${world.registry.host}/test/docker:1`, opts);
  });

  test('offline: with the gateway gone, a cached image still passes the check, and fails it once too old', async () => {
    await gw.stop();
    stop = () => world.stop();
    const again = await pullImage(trust, cache, `${world.registry.host}/test/signed:1`, { ...opts, pull: 'never' });
    assert.equal(again.manifestDigest.text, world.digests.signed);
    assert.equal(
      await refusal(
        pullImage(trust, cache, `${world.registry.host}/test/signed:1`, {
          ...opts,
          pull: 'never',
          now: new Date(Date.now() + 40 * DAY),
        }),
      ),
      'ATTESTATION_EXPIRED',
    );
    assert.equal(
      await refusal(pullImage(trust, cache, `${world.registry.host}/test/unsigned:1`, { ...opts, pull: 'never' })),
      'NOT_CACHED',
    );
  });

  test("offline: a cache entry pointed at another image's attestation is refused", async () => {
    const refs = join(paths.dataDir, 'images', 'refs');
    const entries = readdirSync(refs).map((f) => ({
      f,
      doc: JSON.parse(readFileSync(join(refs, f), 'utf8')) as { manifest: string; envelope: string },
    }));
    const signed = entries.find((e) => e.doc.manifest === world.digests.signed);
    const docker = entries.find((e) => e.doc.manifest === world.digests.docker);
    assert.ok(signed && docker);
    writeFileSync(join(refs, signed.f), JSON.stringify({ ...signed.doc, envelope: docker.doc.envelope }));
    assert.equal(
      await refusal(pullImage(trust, cache, `${world.registry.host}/test/signed:1`, { ...opts, pull: 'never' })),
      'ATTESTATION_WRONG_SUBJECT',
    );
  });
});

describe('a layer whose bytes do not match its digest is refused and nothing is cached', () => {
  let fake: FaultRegistry;
  let layer: string;
  const home = tempDir('portcullis-home-');
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

  before(async () => {
    fake = await startFaultRegistry();
    const image = serveImage(fake, 'team/app', 'v1', [{ bytes: Buffer.from('the real layer') }]);
    layer = image.layerDigests[0] as string;
    fake.route('GET', `/v2/team/app/blobs/${layer}`, (_req, res) =>
      res.writeHead(200, { 'content-length': 14 }).end('a forged layer'),
    );
    // A correct attestation from the pinned key: only the layer is wrong.
    serveGatewayAttestation(fake, 'team/app', {
      attested: image.digest,
      name: 'reg.example/team/app',
      key: key.privateKey,
      subjects: [image.digest],
    });
  });
  after(async () => {
    await fake.stop();
    home.cleanup();
  });

  test('IMAGE_INVALID, and the cache holds no part of the forged layer', async () => {
    const paths = runnerPaths(
      { XDG_CONFIG_HOME: join(home.path, 'c'), XDG_DATA_HOME: join(home.path, 'd') },
      home.path,
    );
    const trust = pinKey(
      paths,
      {
        gateway: fake.url,
        publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }) as string,
        fingerprint: 'sha256:x',
      },
      { confirmed: true },
    );
    const cache = new ImageCache(join(paths.dataDir, 'images'));
    const code = await refusal(
      pullImage(trust, cache, 'reg.example/team/app:v1', { platform: hostPlatform(), maxAgeMs: DAY, pull: 'always' }),
    );
    assert.equal(code, 'IMAGE_INVALID');
    assert.deepEqual(readdirSync(join(paths.dataDir, 'images', 'tmp')), []);
    const cached = readdirSync(join(paths.dataDir, 'images', 'blobs', 'sha256'));
    assert.ok(!cached.includes(parseDigest(layer).hex), 'the layer was not cached');
  });
});
