import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cosignEnv, cosignKeyPair, type CosignKey } from '../helpers/cosign.js';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import {
  attestedEmptyImage,
  BUNDLE_PREDICATE_TYPE,
  BUNDLE_SIGNER,
  DOCKER_MANIFEST,
  emptyImage,
} from '../helpers/sigstore-images.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * In-toto attestations with conditions, through the gateway, with docker-registry as
 * the upstream and skopeo as the client:
 * - a real Sigstore bundle v0.3 (public-good Fulcio and Rekor, from cosign's tests)
 *   attached to go-containerregistry's empty image as a referrer (distribution 2.8 has
 *   no referrers API: the `sha256-<hex>` fallback tag lists it);
 * - attestations the real cosign 2.5 makes with a key, as a bundle (`attest
 *   --new-bundle-format`) and as the `.att` tag (`attest`), and cosign
 *   verify-attestation agreeing with the gateway.
 */
const COSIGN_ATTESTATION = BUNDLE_PREDICATE_TYPE;
const SIGNER = BUNDLE_SIGNER;

describe('attestations are verified through the gateway', () => {
  let registry: TestRegistry;
  const gateways: TestGateway[] = [];
  const dir = tempDir('portcullis-attestations-');
  let digest: string;
  let key: CosignKey;

  const gateway = async (requirement: string, files: Record<string, Buffer> = {}) => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${registry.host}`,
        '    require:',
        `      - ${requirement}`,
        '',
      ].join('\n'),
      files: { 'cosign.pub': readFileSync(key.pub), ...files },
    });
    gateways.push(gw);
    return gw;
  };
  const inspect = (gw: TestGateway, repo: string) =>
    run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${gw.host}/up/${repo}:1`], { allowFail: true });
  const decision = (gw: TestGateway) => decisionLogs(gw).find((l) => l.digest === digest);

  before(async () => {
    registry = await startRegistry();
    key = await cosignKeyPair(dir.path, 'ci');
    // The real bundle, as a referrer of the empty image in `keyless/app`.
    digest = await attestedEmptyImage(registry, 'keyless/app');
    // cosign's own attestations, made with a key, in `keyed/app`.
    await emptyImage(registry, 'keyed/app');
    // Two statements (the .att one and the bundle one differ in a field no condition below reads),
    // so each form is judged on its own: one statement by one signer is judged once.
    const predicate = (form: string) => {
      const path = join(dir.path, `provenance-${form}.json`);
      writeFileSync(
        path,
        JSON.stringify({
          buildDefinition: {
            buildType: 'https://ci.example.com/build/v1',
            externalParameters: { ref: 'refs/tags/v1', form },
          },
          runDetails: { builder: { id: 'https://ci.example.com/builder' } },
        }),
      );
      return path;
    };
    const ref = `${registry.host}/keyed/app@${digest}`;
    for (const format of [['--new-bundle-format'], []]) {
      const r = await run(
        'cosign',
        [
          'attest',
          ...format,
          '--key',
          key.key,
          '--tlog-upload=false',
          '-y',
          '--type',
          'slsaprovenance1',
          '--predicate',
          predicate(format.length > 0 ? 'bundle' : 'att'),
          '--allow-http-registry',
          '--allow-insecure-registry',
          ref,
        ],
        { env: cosignEnv(key.home, key.password), allowFail: true },
      );
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(async () => {
    for (const gw of gateways) await gw.stop();
    await registry?.stop();
    dir.cleanup();
  });

  test('a real keyless v0.3 bundle among the referrers admits the image when its condition holds', async () => {
    const gw = await gateway(
      `attestation: { predicateType: ${COSIGN_ATTESTATION}, ${SIGNER}, conditions: ['predicate.Data.contains("foo")'], identity: { exact: "127.0.0.1:60943/repo" } }`,
    );
    const r = await inspect(gw, 'keyless/app');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(decision(gw)?.allowed, true);
  });

  test('the same bundle: a failing condition, another type, another signer, another repository are denied, each with its reason', async () => {
    const cases: [string, string][] = [
      [
        `attestation: { predicateType: ${COSIGN_ATTESTATION}, ${SIGNER}, conditions: ['predicate.Data.contains("baz")'], identity: any }`,
        'attestation.condition_failed',
      ],
      [
        `attestation: { predicateType: https://slsa.dev/provenance/v1, ${SIGNER}, identity: any }`,
        'attestation.missing',
      ],
      [
        `attestation: { predicateType: ${COSIGN_ATTESTATION}, keyless: { issuer: https://github.com/login/oauth, subject: someone@example.com }, identity: any }`,
        'signature.signer_untrusted',
      ],
      [`attestation: { predicateType: ${COSIGN_ATTESTATION}, ${SIGNER} }`, 'signature.identity_mismatch'],
      // An attestation is not an image signature: a cosign requirement does not count it.
      [`cosign: { ${SIGNER}, identity: any }`, 'signature.missing'],
    ];
    for (const [requirement, reason] of cases) {
      const gw = await gateway(requirement);
      const r = await inspect(gw, 'keyless/app');
      assert.notEqual(r.code, 0, requirement);
      assert.equal(decision(gw)?.reason, reason, requirement);
    }
  });

  test("cosign's own attestations, as a bundle and as the .att tag, admit by their conditions", async () => {
    const condition = `'predicate.buildDefinition.buildType == "https://ci.example.com/build/v1" && predicate.runDetails.builder.id.startsWith("https://ci.example.com/")'`;
    const gw = await gateway(
      `attestation: { predicateType: https://slsa.dev/provenance/v1, keys: [cosign.pub], conditions: [${condition}], identity: { exact: "${registry.host}/keyed/app" } }`,
    );
    const r = await inspect(gw, 'keyed/app');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(decision(gw)?.allowed, true);
    // The gateway's own attestation lists the statement it rested on: where, who signed, what type.
    const res = await fetch(`${gw.url}/v2/up/keyed/app/_portcullis/attestation/${digest}`);
    assert.equal(res.status, 200);
    const envelope = (await res.json()) as { payload: string };
    const inputs = (
      JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
        predicate: { inputAttestations: { uri: string; annotations?: Record<string, string> }[] };
      }
    ).predicate.inputAttestations;
    assert.equal(inputs.length, 1, JSON.stringify(inputs));
    assert.match(inputs[0]?.uri ?? '', /keyed\/app(@sha256:[0-9a-f]{64}|:sha256-[0-9a-f]{64}\.att)$/);
    assert.equal(inputs[0]?.annotations?.['dev.portcullis.predicateType'], 'https://slsa.dev/provenance/v1');
    assert.equal(inputs[0]?.annotations?.['dev.portcullis.signer'], 'cosign.pub');

    // A condition neither form meets: each is judged, and named in the denial.
    const denied = await gateway(
      `attestation: { predicateType: https://slsa.dev/provenance/v1, keys: [cosign.pub], conditions: ['predicate.buildDefinition.externalParameters.ref == "refs/heads/main"'], identity: any }`,
    );
    const refused = await fetch(`${denied.url}/v2/up/keyed/app/manifests/1`, {
      headers: { accept: DOCKER_MANIFEST },
    });
    assert.equal(refused.status, 403);
    const body = (await refused.json()) as {
      errors: { detail: { reason: string; reasons: { code: string; evidence?: string }[] } }[];
    };
    const detail = body.errors[0]?.detail;
    assert.equal(detail?.reason, 'attestation.condition_failed');
    const failed = (detail?.reasons ?? [])
      .filter((x) => x.code === 'attestation.condition_failed')
      .map((x) => x.evidence ?? '');
    assert.ok(
      failed.some((e) => e.startsWith('referrer ')),
      `the bundle was judged: ${JSON.stringify(detail?.reasons)}`,
    );
    assert.ok(
      failed.some((e) => e.includes('.att')),
      `the .att envelope was judged: ${JSON.stringify(detail?.reasons)}`,
    );
  });

  test('cosign verify-attestation agrees with the gateway on the key and the predicate type', async () => {
    const gw = await gateway(
      `attestation: { predicateType: https://slsa.dev/provenance/v1, keys: [cosign.pub], identity: any }`,
    );
    const ref = `${gw.host}/up/keyed/app@${digest}`;
    const verify = (type: string, pub: string) =>
      run(
        'cosign',
        [
          'verify-attestation',
          '--key',
          pub,
          '--insecure-ignore-tlog',
          '--type',
          type,
          '--allow-http-registry',
          '--allow-insecure-registry',
          ref,
        ],
        { env: cosignEnv(key.home, key.password), allowFail: true },
      );
    const ok = await verify('slsaprovenance1', key.pub);
    assert.equal(ok.code, 0, ok.stderr);
    const other = await cosignKeyPair(dir.path, 'other');
    const wrongKey = await verify('slsaprovenance1', other.pub);
    assert.notEqual(wrongKey.code, 0);
    // The gateway, trusting another key, denies what cosign denies.
    const gwOther = await gateway(
      'attestation: { predicateType: https://slsa.dev/provenance/v1, keys: [other.pub], identity: any }',
      { 'other.pub': readFileSync(other.pub) },
    );
    assert.notEqual((await inspect(gwOther, 'keyed/app')).code, 0);
    assert.equal(decision(gwOther)?.reason, 'signature.untrusted_key');
  });
});
