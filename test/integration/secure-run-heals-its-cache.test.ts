import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';

/**
 * A cached blob is trusted by its digest, not its size: a same-size corruption of a
 * cached layer or config is found, the bad copy dropped and fetched again when the
 * run may use the network, and with --pull never the run is refused with its own code
 * (the next online run heals it). Nothing has to be cleared by hand.
 */
describe('secure-run heals a corrupted cache', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, sr } = secureRunHome();
  let image: string;
  const data = () => join(home.path, 'data', 'secure-run');
  const blob = (digest: string) => join(data(), 'images', 'blobs', 'sha256', digest.replace('sha256:', ''));
  const hashOf = (path: string) => `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
  /** Flips one byte in the middle: same size, other content. */
  const corrupt = (path: string) => {
    const bytes = readFileSync(path);
    const i = Math.floor(bytes.length / 2);
    bytes[i] = (bytes[i] ?? 0) ^ 0xff;
    writeFileSync(path, bytes);
  };
  let manifest: { config: { digest: string }; layers: { digest: string }[] };

  before(async () => {
    // As root, the container's ids must be able to reach the data directory under this home.
    chmodSync(home.path, 0o711);
    ({ world, gw, stop } = await startWorldGateway());
    image = `${world.registry.host}/test/signed:1`;
    const pinned = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(pinned.status, 0, pinned.stderr);
    const first = await sr(image, '-c', 'true');
    assert.equal(first.status, 0, first.stderr);
    const [ref] = readdirSync(join(data(), 'images', 'refs'));
    const entry = JSON.parse(readFileSync(join(data(), 'images', 'refs', ref as string), 'utf8')) as {
      manifest: string;
    };
    manifest = JSON.parse(readFileSync(blob(entry.manifest), 'utf8')) as typeof manifest;
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  const dropUnpacked = () => rmSync(join(data(), 'rootfs'), { recursive: true, force: true });

  test('a corrupted layer is found when it is unpacked again, fetched again, and the run succeeds', async () => {
    const layer = manifest.layers[0]?.digest as string;
    corrupt(blob(layer));
    dropUnpacked();
    const r = await sr(image, '-c', 'true');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /no longer matched their digests/);
    assert.equal(hashOf(blob(layer)), layer);
  });

  test('with --pull never the run is refused with LAYER_DIGEST_MISMATCH, and the next online run heals it', async () => {
    const layer = manifest.layers[0]?.digest as string;
    corrupt(blob(layer));
    const r = await sr('--pull', 'never', '--writable-root', image, '-c', 'true');
    assert.equal(r.status, 125);
    assert.match(r.stderr, /\[LAYER_DIGEST_MISMATCH\]/);
    const healed = await sr('--writable-root', image, '-c', 'true');
    assert.equal(healed.status, 0, healed.stderr);
    assert.equal(hashOf(blob(layer)), layer);
  });

  test('a corrupted config is fetched again', async () => {
    corrupt(blob(manifest.config.digest));
    const r = await sr(image, '-c', 'true');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(hashOf(blob(manifest.config.digest)), manifest.config.digest);
  });
});
