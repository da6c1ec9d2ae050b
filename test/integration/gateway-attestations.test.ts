import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { verifySummaryEnvelope } from '../../policies/attestation.js';
import { cosignEnv, cosignKeyPair, type CosignKey } from '../helpers/cosign.js';
import { run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import type { TestGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/tmp.js';

const VSA = 'https://slsa.dev/verification_summary/v1';
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('every admitted image gets a verification attestation that standard tools find', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const dir = tempDir('portcullis-att-');
  let gatewayPub: string;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    const res = await fetch(`${gw.url}/v2/_portcullis/gateway.pub`);
    assert.equal(res.status, 200);
    gatewayPub = join(dir.path, 'gateway.pub');
    writeFileSync(gatewayPub, await res.text());
  });
  after(async () => {
    await stop();
    dir.cleanup();
  });

  const verifyAttestation = (pub: string, ref: string, home: CosignKey | { home: string; password: string }) =>
    run(
      'cosign',
      [
        'verify-attestation',
        '--key',
        pub,
        '--insecure-ignore-tlog',
        '--allow-http-registry',
        '--allow-insecure-registry',
        '--type',
        VSA,
        ref,
      ],
      { env: cosignEnv(home.home, home.password), allowFail: true },
    );

  test('cosign verify-attestation with the gateway key succeeds against the gateway', async () => {
    const pull = await fetch(`${gw.url}/v2/up/test/signed/manifests/1`, { headers: { accept: OCI } });
    assert.equal(pull.status, 200);
    await pull.arrayBuffer();
    const r = await verifyAttestation(gatewayPub, `${gw.host}/up/test/signed@${world.digests.signed}`, world.trusted);
    assert.equal(r.code, 0, r.stderr);
    const payload = JSON.parse(
      Buffer.from(
        (JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as { payload: string }).payload,
        'base64',
      ).toString(),
    ) as {
      subject: { digest: { sha256: string } }[];
      predicate: { verificationResult: string; policy: { digest: { sha256: string } }; inputAttestations: unknown[] };
    };
    assert.equal(`sha256:${payload.subject[0]?.digest.sha256}`, world.digests.signed);
    assert.equal(payload.predicate.verificationResult, 'PASSED');
    assert.equal(payload.predicate.inputAttestations.length, 1);
  });

  test('it fails with another key, and the envelope verifies with the pinned key in process', async () => {
    const other = await cosignKeyPair(dir.path, 'not-the-gateway');
    const r = await verifyAttestation(other.pub, `${gw.host}/up/test/signed@${world.digests.signed}`, other);
    assert.notEqual(r.code, 0);
    const att = await fetch(`${gw.url}/v2/up/test/signed/manifests/${world.digests.signed.replace(':', '-')}.att`, {
      headers: { accept: OCI },
    });
    assert.equal(att.status, 200);
    const manifest = (await att.json()) as { layers: { digest: string; annotations: Record<string, string> }[] };
    const ours = manifest.layers.find((l) => l.annotations.predicateType === VSA);
    const envelope = Buffer.from(
      await (await fetch(`${gw.url}/v2/up/test/signed/blobs/${ours?.digest}`)).arrayBuffer(),
    );
    const summary = verifySummaryEnvelope(
      envelope,
      createPublicKey(await (await fetch(`${gw.url}/v2/_portcullis/gateway.pub`)).text()),
      { digest: world.digests.signed, now: new Date(), maxAgeMs: 3_600_000 },
    );
    assert.deepEqual(summary.subjectDigests, [world.digests.signed]);
  });

  test("a publisher's own attestation stays visible next to the gateway's", async () => {
    const predicate = join(dir.path, 'predicate.json');
    writeFileSync(predicate, JSON.stringify({ builtBy: 'the publisher' }));
    const ref = `${world.registry.host}/test/docker@${world.digests.docker}`;
    await run(
      'cosign',
      [
        'attest',
        '--key',
        world.trusted.key,
        '--type',
        'custom',
        '--predicate',
        predicate,
        '--tlog-upload=false',
        '-y',
        ref,
      ],
      { env: cosignEnv(world.trusted.home, world.trusted.password) },
    );
    const viaGateway = `${gw.host}/up/test/docker@${world.digests.docker}`;
    const publisher = await run(
      'cosign',
      ['verify-attestation', '--key', world.trusted.pub, '--insecure-ignore-tlog', '--type', 'custom', viaGateway],
      { env: cosignEnv(world.trusted.home, world.trusted.password), allowFail: true },
    );
    assert.equal(publisher.code, 0, publisher.stderr);
    const gateway = await verifyAttestation(gatewayPub, viaGateway, world.trusted);
    assert.equal(gateway.code, 0, gateway.stderr);
  });

  test('the referrers API lists the attestation, which can be fetched by digest', async () => {
    const res = await fetch(`${gw.url}/v2/up/test/signed/referrers/${world.digests.signed}`);
    assert.equal(res.status, 200);
    const list = ((await res.json()) as { manifests: { digest: string; artifactType: string }[] }).manifests;
    const ours = list.find((m) => m.artifactType === 'application/vnd.in-toto+json');
    assert.ok(ours);
    const m = await fetch(`${gw.url}/v2/up/test/signed/manifests/${ours.digest}`, { headers: { accept: OCI } });
    assert.equal(m.status, 200);
    assert.equal(((await m.json()) as { subject: { digest: string } }).subject.digest, world.digests.signed);
  });

  test('nothing that is not an admitted image gets an attestation: a .sig manifest asked for as a subject', async () => {
    const sig = await fetch(`${gw.url}/v2/up/test/signed/manifests/${world.digests.signed.replace(':', '-')}.sig`, {
      headers: { accept: OCI },
    });
    assert.equal(sig.status, 200);
    const sigDigest = sig.headers.get('docker-content-digest') as string;
    await sig.arrayBuffer();
    const att = await fetch(`${gw.url}/v2/up/test/signed/manifests/${sigDigest.replace(':', '-')}.att`, {
      headers: { accept: OCI },
    });
    assert.equal(att.status, 404);
    assert.equal(((await att.json()) as { errors: { code: string }[] }).errors[0]?.code, 'MANIFEST_UNKNOWN');
  });

  test("a publisher's attestation that claims the gateway's predicate type is not passed off as the gateway's", async () => {
    const predicate = join(dir.path, 'fake-vsa.json');
    writeFileSync(predicate, JSON.stringify({ verifier: { id: 'urn:not-the-gateway' }, verificationResult: 'PASSED' }));
    const ref = `${world.registry.host}/test/multi@${world.digests.multi}`;
    await run(
      'cosign',
      ['attest', '--key', world.trusted.key, '--type', VSA, '--predicate', predicate, '--tlog-upload=false', '-y', ref],
      { env: cosignEnv(world.trusted.home, world.trusted.password) },
    );
    const att = await fetch(`${gw.url}/v2/up/test/multi/manifests/${world.digests.multi.replace(':', '-')}.att`, {
      headers: { accept: OCI },
    });
    assert.equal(att.status, 200);
    const layers = ((await att.json()) as { layers: { annotations: Record<string, string> }[] }).layers.filter(
      (l) => l.annotations.predicateType === VSA,
    );
    assert.equal(layers.length, 1);
    assert.equal(layers[0]?.annotations['dev.portcullis.attestation'], 'verification-summary');
  });

  test('a denied image has no attestation to show', async () => {
    const att = await fetch(`${gw.url}/v2/up/test/unsigned/manifests/${world.digests.unsigned.replace(':', '-')}.att`, {
      headers: { accept: OCI },
    });
    assert.equal(att.status, 403);
    await att.arrayBuffer();
  });
});
