import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildImage, pushImage } from '../helpers/images.js';
import { peer, run } from '../helpers/peers.js';
import { testPodman } from '../helpers/podman.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';
import { startSigstoreStandin, type SigstoreStandin, type StandinCA } from '../helpers/sigstore-standin.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Keyless signing end to end without the internet: the real cosign 2.5 signs and attests
 * keylessly against a private Sigstore of the test's own (Fulcio, CT log, Rekor from
 * @sigstore/mock, on 127.0.0.1) with identity tokens the test mints; docker-registry is
 * the upstream; the gateway trusts that Sigstore through a trusted_root.json named in
 * the policy. Each fault is a real signature whose one part is wrong, and is denied with
 * its own reason; `cosign verify` with the same trust material agrees on each;
 * skopeo, podman and secure-run get the keyless admission and nothing else.
 */
const ISSUER = 'https://token.actions.githubusercontent.com';
const WORKFLOW = 'https://github.com/team/app/.github/workflows/release.yml@refs/tags/v1';
const CLAIMS = {
  iss: ISSUER,
  sub: WORKFLOW,
  repository: 'team/app',
  ref: 'refs/tags/v1',
  runner_environment: 'github-hosted',
  event_name: 'push',
};
const SLSA = 'https://slsa.dev/provenance/v1';
const BUILD_TYPE = 'https://actions.github.io/buildtypes/workflow/v1';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const signer = (extra = '') =>
  `keyless: { issuer: ${ISSUER}, subject: '${WORKFLOW}', trustedRoot: sigstore-root.json${extra} }`;
const keylessRule = (repo: string, requirement: string) => [
  `  - scope: REGISTRY/${repo}`,
  '    require:',
  `      - ${requirement}`,
];

/** Repository → requirement. Each repository holds image `a` (but `borrowed-bundle`: `b`) with one signature. */
const RULES: Record<string, string> = {
  good: `cosign: { ${signer(", claims: { sourceRepositoryURI: https://github.com/team/app, sourceRepositoryRef: { regExp: 'refs/tags/v.*' }, runnerEnvironment: github-hosted }")}, identity: repository }`,
  'other-subject': `cosign: { keyless: { issuer: ${ISSUER}, subjectRegExp: 'https://github\\.com/team/app/\\.github/workflows/deploy\\.yml@.*', trustedRoot: sigstore-root.json }, identity: repository }`,
  'other-issuer': `cosign: { keyless: { issuer: https://accounts.google.com, subject: '${WORKFLOW}', trustedRoot: sigstore-root.json }, identity: repository }`,
  'other-claim': `cosign: { ${signer(', claims: { sourceRepositoryRef: refs/heads/main }')}, identity: repository }`,
  expired: `cosign: { ${signer()}, identity: repository }`,
  'no-sct': `cosign: { ${signer()}, identity: repository }`,
  'foreign-sct': `cosign: { ${signer()}, identity: repository }`,
  'no-ct-needed': `cosign: { ${signer(', thresholds: { sct: 0 }')}, identity: repository }`,
  'swapped-entry': `cosign: { ${signer()}, identity: repository }`,
  attested: `attestation: { predicateType: ${SLSA}, ${signer()}, conditions: ['predicate.buildDefinition.buildType == "${BUILD_TYPE}"'], identity: repository }`,
  'attested-strict': `attestation: { predicateType: ${SLSA}, ${signer()}, conditions: ['predicate.runDetails.builder.id == "https://github.com/other/builder"'], identity: repository }`,
  bundled: `attestation: { predicateType: ${SLSA}, ${signer()}, conditions: ['predicate.buildDefinition.buildType == "${BUILD_TYPE}"'], identity: repository }`,
  'borrowed-bundle': `attestation: { predicateType: ${SLSA}, ${signer()}, identity: repository }`,
};

describe('keyless signing with a private Sigstore, through the gateway', () => {
  const dir = tempDir('portcullis-private-sigstore-');
  let registry: TestRegistry;
  let sigstore: SigstoreStandin;
  let gw: TestGateway;
  const digests: Record<string, string> = {};
  const home = join(dir.path, 'cosign-home');

  const cosignEnv = () => ({ PATH: process.env.PATH, HOME: home, TUF_ROOT: join(home, 'tuf'), ...sigstore.env });
  const cosign = (args: string[], allowFail = false) => run('cosign', args, { env: cosignEnv(), allowFail });
  const ref = (repo: string) => `${registry.host}/keyless/${repo}@${digests[repo]}`;
  const sign = (repo: string, ca: StandinCA = 'good') =>
    cosign([
      'sign',
      '-y',
      ...sigstore.signArgs(ca),
      // cosign checks the SCT of its own certificate; the faulty CAs are there to be caught by the verifier.
      ...(ca === 'no-sct' || ca === 'foreign-sct' ? ['--insecure-skip-verify'] : []),
      '--identity-token',
      sigstore.identityToken(CLAIMS),
      '--allow-http-registry',
      '--allow-insecure-registry',
      ref(repo),
    ]);
  const predicate = join(dir.path, 'provenance.json');
  const attest = (repo: string, bundle: boolean) =>
    cosign([
      'attest',
      '-y',
      ...sigstore.signArgs(),
      '--identity-token',
      sigstore.identityToken(CLAIMS),
      '--type',
      'slsaprovenance1',
      '--predicate',
      predicate,
      ...(bundle ? ['--new-bundle-format'] : []),
      '--allow-http-registry',
      '--allow-insecure-registry',
      ref(repo),
    ]);
  const sigTag = (repo: string, suffix: string) => `${(digests[repo] ?? '').replace(':', '-')}${suffix}`;
  const getManifest = async (repo: string, tag: string) => {
    const res = await fetch(`${registry.url}/v2/keyless/${repo}/manifests/${tag}`, {
      headers: { accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
    });
    assert.equal(res.status, 200, `${repo}:${tag}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const putManifest = async (repo: string, tag: string, type: string, body: unknown) => {
    const res = await fetch(`${registry.url}/v2/keyless/${repo}/manifests/${tag}`, {
      method: 'PUT',
      headers: { 'content-type': type },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 201, await res.text());
  };
  /** Mounts a blob of one repository into another (docker-registry's cross-repository mount). */
  const mount = async (from: string, to: string, digest: string) => {
    const res = await fetch(`${registry.url}/v2/keyless/${to}/blobs/uploads/?mount=${digest}&from=keyless/${from}`, {
      method: 'POST',
    });
    assert.equal(res.status, 201, await res.text());
  };
  const pull = async (repo: string) => {
    const res = await fetch(`${gw.url}/v2/up/keyless/${repo}/manifests/1`, {
      headers: { accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
    });
    const body = (await res.json()) as {
      errors?: { detail?: { reason?: string; reasons?: { code: string; message: string }[] } }[];
    };
    return { status: res.status, detail: body.errors?.[0]?.detail };
  };
  const denied = async (repo: string, code: string) => {
    const r = await pull(repo);
    assert.equal(r.status, 403, `${repo}: ${JSON.stringify(r.detail)}`);
    assert.equal(r.detail?.reason, code, `${repo}: ${JSON.stringify(r.detail?.reasons)}`);
  };

  before(async () => {
    mkdirSync(home);
    registry = await startRegistry();
    sigstore = await startSigstoreStandin(dir.path);
    const layout = join(dir.path, 'layout');
    await buildImage(layout, 'a', { text: 'image a' });
    await buildImage(layout, 'b', { text: 'image b' });
    for (const repo of Object.keys(RULES))
      digests[repo] = await pushImage(
        layout,
        repo === 'borrowed-bundle' ? 'b' : 'a',
        `${registry.host}/keyless/${repo}:1`,
      );
    writeFileSync(
      predicate,
      JSON.stringify({
        buildDefinition: { buildType: BUILD_TYPE, externalParameters: { workflow: { repository: 'team/app' } } },
        runDetails: { builder: { id: 'https://github.com/actions/runner/github-hosted' } },
      }),
    );
    await Promise.all([
      sign('good'),
      sign('other-subject'),
      sign('other-issuer'),
      sign('other-claim'),
      sign('swapped-entry'),
      sign('expired', 'clock-behind'),
      sign('no-sct', 'no-sct'),
      sign('foreign-sct', 'foreign-sct'),
      sign('no-ct-needed', 'no-sct'),
      attest('attested', false),
      attest('attested-strict', false),
      attest('bundled', true),
    ]);

    // Rekor entry for another signature: good's log entry on swapped-entry's own (valid) signature.
    const goodSig = await getManifest('good', sigTag('good', '.sig'));
    const swapped = await getManifest('swapped-entry', sigTag('swapped-entry', '.sig'));
    const layerOf = (m: Record<string, unknown>) =>
      (m.layers as { annotations: Record<string, string> }[])[0] as { annotations: Record<string, string> };
    layerOf(swapped).annotations['dev.sigstore.cosign/bundle'] =
      layerOf(goodSig).annotations['dev.sigstore.cosign/bundle'] ?? '';
    await putManifest('swapped-entry', sigTag('swapped-entry', '.sig'), OCI_MANIFEST, swapped);

    // A bundle for another digest: bundled's referrer (a DSSE bundle about image a),
    // listed in the fallback tag of image b.
    const referrers = await getManifest('bundled', sigTag('bundled', ''));
    const refs = referrers.manifests as { digest: string }[];
    assert.equal(refs.length, 1, JSON.stringify(referrers));
    const referrer = await getManifest('bundled', refs[0]?.digest ?? '');
    for (const blob of [
      (referrer.config as { digest: string }).digest,
      ...(referrer.layers as { digest: string }[]).map((l) => l.digest),
    ])
      await mount('bundled', 'borrowed-bundle', blob);
    await putManifest('borrowed-bundle', refs[0]?.digest ?? '', OCI_MANIFEST, referrer);
    await putManifest('borrowed-bundle', sigTag('borrowed-bundle', ''), OCI_INDEX, referrers);

    const policy = ['version: 1', 'default: reject', 'rules:'];
    for (const [repo, requirement] of Object.entries(RULES)) policy.push(...keylessRule(repo, requirement));
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: policy.join('\n').replaceAll('REGISTRY', `${registry.host}/keyless`) + '\n',
      files: { 'sigstore-root.json': readFileSync(sigstore.trustedRootFile) },
    });
  });
  after(async () => {
    await gw?.stop();
    await sigstore?.close();
    await registry?.stop();
    dir.cleanup();
  });

  test('a valid keyless signature is admitted: skopeo gets the image, and the attestation names the signer', async () => {
    const r = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${gw.host}/up/keyless/good:1`], {
      allowFail: true,
    });
    assert.equal(r.code, 0, r.stderr);
    const d = decisionLogs(gw).find((l) => l.digest === digests.good);
    assert.equal(d?.allowed, true);
    const res = await fetch(`${gw.url}/v2/up/keyless/good/_portcullis/attestation/${digests.good}`);
    assert.equal(res.status, 200);
    const statement = JSON.parse(
      Buffer.from(((await res.json()) as { payload: string }).payload, 'base64').toString('utf8'),
    ) as { predicate: { inputAttestations: { annotations?: Record<string, string> }[] } };
    assert.equal(
      statement.predicate.inputAttestations[0]?.annotations?.['dev.portcullis.signer'],
      `${WORKFLOW} (${ISSUER})`,
    );
  });

  test('podman pulls the keyless admission through the gateway, and is refused the one with a swapped log entry', async () => {
    const podman = testPodman(
      ['[[registry]]', `prefix = "${registry.host}"`, `location = "${gw.host}/up"`, 'insecure = true', ''].join('\n'),
    );
    try {
      const r = await podman.pull(`${registry.host}/keyless/good:1`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await podman.digestOf(`${registry.host}/keyless/good:1`), digests.good);
      const swapped = await podman.pull(`${registry.host}/keyless/swapped-entry:1`);
      assert.notEqual(swapped.code, 0);
      assert.match(swapped.stderr, /denied/i);
    } finally {
      podman.cleanup();
    }
  });

  test('another identity, another issuer or another claim is not the signer the rule names', async () => {
    await denied('other-subject', 'signature.signer_untrusted');
    await denied('other-issuer', 'signature.signer_untrusted');
    await denied('other-claim', 'signature.signer_untrusted');
  });

  test('a certificate that had expired when Rekor logged the signature is refused', async () => {
    await denied('expired', 'signature.certificate_expired');
  });

  test('a certificate without an SCT, or with one from a CT log the root does not know, is refused', async () => {
    await denied('no-sct', 'signature.sct_invalid');
    await denied('foreign-sct', 'signature.sct_invalid');
  });

  test('a rule for a Sigstore without a CT log asks for no SCT', async () => {
    assert.equal((await pull('no-ct-needed')).status, 200);
  });

  test('a Rekor entry for another signature is refused', async () => {
    await denied('swapped-entry', 'signature.log_entry_invalid');
  });

  test('a keyless attestation is admitted when its conditions hold, and denied when one fails', async () => {
    assert.equal((await pull('attested')).status, 200);
    assert.equal((await pull('bundled')).status, 200);
    await denied('attested-strict', 'attestation.condition_failed');
  });

  test('a bundle about another digest does not attest this one', async () => {
    await denied('borrowed-bundle', 'signature.digest_mismatch');
  });

  test('secure-run launches the keyless admission, offline-verified, and refuses the expired one', async () => {
    for (const p of ['crun', 'tini-static', 'unshare', 'nsenter', 'setpriv']) peer(p);
    const { home: srHome, sr } = secureRunHome();
    try {
      // The container's root (an unprivileged host id) must be able to reach its bundle.
      chmodSync(srHome.path, 0o711);
      const t = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
      assert.equal(t.status, 0, t.stderr);
      const r = await sr('--runtime', 'crun', `${registry.host}/keyless/good:1`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'image a\n');
      const again = await sr('--runtime', 'crun', '--pull', 'never', `${registry.host}/keyless/good:1`);
      assert.equal(again.status, 0, again.stderr);
      const expired = await sr('--runtime', 'crun', `${registry.host}/keyless/expired:1`);
      assert.equal(expired.status, 125);
      assert.match(expired.stderr, /\[IMAGE_DENIED signature\.certificate_expired\]/);
    } finally {
      srHome.cleanup();
    }
  });

  test('cosign verify, offline with the same trust material, agrees with every verdict', async () => {
    const verify = (repo: string, identity = WORKFLOW, issuer = ISSUER) =>
      cosign(
        [
          'verify',
          '--offline',
          '--certificate-identity',
          identity,
          '--certificate-oidc-issuer',
          issuer,
          '--allow-http-registry',
          '--allow-insecure-registry',
          ref(repo),
        ],
        true,
      );
    const good = await verify('good');
    assert.equal(good.code, 0, good.stderr);
    const cases: [string, string?, string?][] = [
      ['other-subject', 'https://github.com/team/app/.github/workflows/deploy.yml@refs/tags/v1'],
      ['other-issuer', WORKFLOW, 'https://accounts.google.com'],
      ['expired'],
      ['no-sct'],
      ['foreign-sct'],
      ['swapped-entry'],
    ];
    for (const [repo, identity, issuer] of cases) {
      const r = await verify(repo, identity, issuer);
      assert.notEqual(r.code, 0, `cosign verify admitted ${repo}`);
    }
    const noCt = await cosign(
      [
        'verify',
        '--offline',
        '--insecure-ignore-sct',
        '--certificate-identity',
        WORKFLOW,
        '--certificate-oidc-issuer',
        ISSUER,
        '--allow-http-registry',
        '--allow-insecure-registry',
        ref('no-ct-needed'),
      ],
      true,
    );
    assert.equal(noCt.code, 0, noCt.stderr);
    const attestation = await cosign(
      [
        'verify-attestation',
        '--offline',
        '--type',
        'slsaprovenance1',
        '--certificate-identity',
        WORKFLOW,
        '--certificate-oidc-issuer',
        ISSUER,
        '--allow-http-registry',
        '--allow-insecure-registry',
        ref('attested'),
      ],
      true,
    );
    assert.equal(attestation.code, 0, attestation.stderr);
  });
});
