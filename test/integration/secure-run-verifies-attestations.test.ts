import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { startFaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';

describe('secure-run trust and verify against a real gateway', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, sr } = secureRunHome();
  let fingerprint: string;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    fingerprint = await gatewayFingerprint(gw.url);
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  test('trust refuses a wrong fingerprint and pins the right one', async () => {
    const wrong = await sr('trust', gw.url, '--fingerprint', `sha256:${'0'.repeat(64)}`);
    assert.equal(wrong.status, 125);
    assert.match(wrong.stderr, /\[TRUST_MISMATCH\]/);
    const unconfirmed = await sr('trust', gw.url);
    assert.equal(unconfirmed.status, 125, 'without a terminal and without --fingerprint nothing is pinned');
    const ok = await sr('trust', gw.url, '--fingerprint', fingerprint);
    assert.equal(ok.status, 0, ok.stderr);
    const pinned = JSON.parse(readFileSync(join(home.path, 'config', 'secure-run', 'trust.json'), 'utf8')) as {
      fingerprint: string;
    };
    assert.equal(pinned.fingerprint, fingerprint);
  });

  test('verify accepts a signed image and a platform of a signed index', async () => {
    const signed = await sr('verify', '--json', `${world.registry.host}/test/signed:1`);
    assert.equal(signed.status, 0, signed.stderr);
    assert.equal((JSON.parse(signed.stdout) as { digest: string }).digest, world.digests.signed);
    const arm = await sr('verify', '--json', '--platform', 'linux/arm64/v8', `${world.registry.host}/test/multi:1`);
    assert.equal(arm.status, 0, arm.stderr);
    assert.equal((JSON.parse(arm.stdout) as { index: string }).index, world.digests.multi);
    const missing = await sr('verify', '--platform', 'linux/s390x', `${world.registry.host}/test/multi:1`);
    assert.match(missing.stderr, /\[PLATFORM_UNAVAILABLE\]/);
  });

  test('verify refuses an image the gateway denies', async () => {
    const r = await sr('verify', `${world.registry.host}/test/unsigned:1`);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /\[IMAGE_DENIED signature\.missing\]/);
  });

  test('a stopped gateway is named as such, with the cause', async () => {
    const stopped = secureRunHome();
    try {
      const gone = await startFaultRegistry();
      await gone.stop();
      mkdirSync(join(stopped.home.path, 'config', 'secure-run'), { recursive: true, mode: 0o700 });
      const trust = JSON.parse(readFileSync(join(home.path, 'config', 'secure-run', 'trust.json'), 'utf8')) as Record<
        string,
        string
      >;
      writeFileSync(
        join(stopped.home.path, 'config', 'secure-run', 'trust.json'),
        JSON.stringify({ ...trust, gateway: gone.url }),
        { mode: 0o600 },
      );
      const r = await stopped.sr('verify', `${world.registry.host}/test/signed:1`);
      assert.equal(r.status, 125);
      assert.match(r.stderr, new RegExp(`the gateway at ${gone.url} could not be reached \\(ECONNREFUSED\\)`));
      assert.match(r.stderr, /\[GATEWAY_UNREACHABLE\]/);
    } finally {
      stopped.home.cleanup();
    }
  });

  test("verify refuses the gateway's attestations when another key is pinned", async () => {
    const impostor = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: 'version: 1\ndefault: accept-anything\nrules: []\n',
    });
    try {
      // Same URL pinned, but the key of a different gateway: every attestation must fail.
      const trustFile = join(home.path, 'config', 'secure-run', 'trust.json');
      const trust = JSON.parse(readFileSync(trustFile, 'utf8')) as Record<string, string>;
      const other = (await (await fetch(`${impostor.url}/v2/_portcullis/gateway.json`)).json()) as {
        publicKey: string;
        fingerprint: string;
      };
      writeFileSync(
        trustFile,
        JSON.stringify({ ...trust, publicKeyPem: other.publicKey, fingerprint: other.fingerprint }),
      );
      const r = await sr('verify', `${world.registry.host}/test/signed:1`);
      assert.equal(r.status, 125);
      assert.match(r.stderr, /\[ATTESTATION_INVALID\]/);
      writeFileSync(trustFile, JSON.stringify(trust));
    } finally {
      await impostor.stop();
    }
  });
});
