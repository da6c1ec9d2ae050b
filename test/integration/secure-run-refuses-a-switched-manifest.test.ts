import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RunnerError } from '../../runner/errors.js';
import { hostPlatform } from '../../runner/platform.js';
import { ImageCache } from '../../runner/image-cache.js';
import { pullImage } from '../../runner/pull.js';
import { runnerPaths } from '../../runner/settings.js';
import { pinKey } from '../../runner/trust.js';
import {
  serveGatewayAttestation,
  serveImage,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { tempDir } from '../helpers/tmp.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('a gateway that serves a different manifest on the second request', () => {
  let fake: FaultRegistry;
  const home = tempDir('portcullis-home-');
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  let first: ReturnType<typeof serveImage>;
  let second: ReturnType<typeof serveImage>;

  before(async () => {
    fake = await startFaultRegistry();
    // Two images; only the first is attested. The tag answers the first, then the second.
    first = serveImage(fake, 'team/app', 'a', [{ bytes: Buffer.from('first image layer') }]);
    second = serveImage(fake, 'team/app', 'b', [{ bytes: Buffer.from('second image layer') }]);
    for (const img of [first, second]) {
      const layer = img.layerDigests[0] as string;
      const bytes = Buffer.from(img === first ? 'first image layer' : 'second image layer');
      fake.route('GET', `/v2/team/app/blobs/${layer}`, (_q, res) =>
        res.writeHead(200, { 'content-length': bytes.length }).end(bytes),
      );
    }
    let requests = 0;
    fake.route('GET', '/v2/team/app/manifests/latest', (_q, res) => {
      const m = requests++ === 0 ? first.manifest : second.manifest;
      res.writeHead(200, { 'content-type': OCI, 'content-length': m.length }).end(m);
    });
    // The attacker also answers the second image's .att tag with the first image's attestation.
    serveGatewayAttestation(fake, 'team/app', {
      attested: first.digest,
      name: 'reg.example/team/app',
      key: key.privateKey,
      subjects: [first.digest, second.digest],
    });
  });
  after(async () => {
    await fake.stop();
    home.cleanup();
  });

  test('the first answer is used as attested; the switched one is refused and the cache keeps the first', async () => {
    const paths = runnerPaths(
      { XDG_CONFIG_HOME: join(home.path, 'c'), XDG_DATA_HOME: join(home.path, 'd') },
      home.path,
    );
    const trust = pinKey(
      paths,
      {
        gateway: fake.url,
        publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }) as string,
        fingerprint: 'sha256:test',
      },
      { confirmed: true },
    );
    const cache = new ImageCache(join(paths.dataDir, 'images'));
    const opts = { platform: hostPlatform(), maxAgeMs: 86_400_000, pull: 'always' as const };
    const ok = await pullImage(trust, cache, 'reg.example/team/app:latest', opts);
    assert.equal(ok.manifestDigest.text, first.digest);
    const refused = await pullImage(trust, cache, 'reg.example/team/app:latest', opts).then(
      () => undefined,
      (e: unknown) => (e instanceof RunnerError ? e.code : 'other'),
    );
    assert.equal(refused, 'ATTESTATION_WRONG_SUBJECT');
    assert.equal(
      cache.has({
        algorithm: 'sha256',
        hex: (second.layerDigests[0] as string).slice(7),
        text: second.layerDigests[0] as string,
      }),
      false,
      'nothing of the switched image was fetched',
    );
    const again = await pullImage(trust, cache, 'reg.example/team/app:latest', { ...opts, pull: 'never' });
    assert.equal(again.manifestDigest.text, first.digest);
  });
});
