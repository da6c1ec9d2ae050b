import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../../policies/sigstore/public-good-root.js';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { plantManifest, pushBlob, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A real keyless cosign signature (public-good Fulcio and Rekor) over a real manifest,
 * served by docker-registry as the upstream: the gateway admits the image for the
 * signer the policy names and denies it for any other, offline, and skopeo (the
 * client) sees exactly that. cosign itself, offline with the same trusted root, agrees.
 */
const FIXTURE = fileURLToPath(
  new URL('../../../test/fixtures/sigstore/containers-image-fulcio-rekor/', import.meta.url),
);
const REPO = 'cosign-signed/fulcio-rekor-1';
const SIGNED_AS = `192.168.64.2:5000/${REPO}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface TrustedRootJson {
  readonly tlogs: readonly { readonly publicKey: { readonly rawBytes: string } }[];
  readonly ctlogs: readonly { readonly publicKey: { readonly rawBytes: string } }[];
  readonly certificateAuthorities: readonly {
    readonly certChain: { readonly certificates: readonly { readonly rawBytes: string }[] };
  }[];
}

describe('keyless cosign signatures are verified through the gateway', () => {
  let registry: TestRegistry;
  const gateways: TestGateway[] = [];
  const dir = tempDir('portcullis-keyless-');
  let digest: string;

  const gateway = async (who: string) => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${registry.host}/cosign-signed`,
        '    require:',
        `      - cosign: { keyless: { ${who} }, identity: { exact: ${SIGNED_AS} } }`,
        '',
      ].join('\n'),
    });
    gateways.push(gw);
    return gw;
  };
  const inspect = (gw: TestGateway) =>
    run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${gw.host}/up/${REPO}:1`], { allowFail: true });

  before(async () => {
    registry = await startRegistry();
    const manifest = readFileSync(join(FIXTURE, 'manifest.json'));
    digest = plantManifest(registry, REPO, manifest, '1');
    // The signature as cosign stores it: a simple-signing layer with the keyless annotations.
    const layer = JSON.parse(readFileSync(join(FIXTURE, 'signature-1')).subarray(15).toString('utf8')) as {
      mimeType: string;
      payload: string;
      annotations: Record<string, string>;
    };
    const payload = Buffer.from(layer.payload, 'base64');
    const payloadDigest = await pushBlob(registry, REPO, payload);
    const config = Buffer.from(
      JSON.stringify({
        architecture: '',
        created: '0001-01-01T00:00:00Z',
        history: [{ created: '0001-01-01T00:00:00Z' }],
        os: '',
        rootfs: { type: 'layers', diff_ids: [payloadDigest] },
        config: {},
      }),
    );
    const configDigest = await pushBlob(registry, REPO, config);
    const sig = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: configDigest },
      layers: [
        { mediaType: layer.mimeType, size: payload.length, digest: payloadDigest, annotations: layer.annotations },
      ],
    });
    const res = await fetch(`${registry.url}/v2/${REPO}/manifests/${digest.replace(':', '-')}.sig`, {
      method: 'PUT',
      headers: { 'content-type': OCI_MANIFEST },
      body: sig,
    });
    assert.equal(res.status, 201, await res.text());
  });
  after(async () => {
    for (const gw of gateways) await gw.stop();
    await registry?.stop();
    dir.cleanup();
  });

  test('admitted for its signer: skopeo gets the manifest, and the decision names the signer', async () => {
    const gw = await gateway('issuer: https://github.com/login/oauth, subject: mitr@redhat.com');
    const r = await inspect(gw);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), JSON.parse(readFileSync(join(FIXTURE, 'manifest.json'), 'utf8')));
    const d = decisionLogs(gw).find((l) => l.digest === digest);
    assert.equal(d?.allowed, true);
    // The gateway's attestation names the signer its admission rested on.
    const res = await fetch(`${gw.url}/v2/up/${REPO}/_portcullis/attestation/${digest}`);
    assert.equal(res.status, 200);
    const envelope = (await res.json()) as { payload: string };
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
      predicate: { inputAttestations: { annotations?: Record<string, string> }[] };
    };
    assert.equal(
      statement.predicate.inputAttestations[0]?.annotations?.['dev.portcullis.signer'],
      'mitr@redhat.com (https://github.com/login/oauth)',
    );
  });

  test('denied for another signer: skopeo is refused with the reason', async () => {
    const gw = await gateway("issuer: https://github.com/login/oauth, subjectRegExp: '.*@example\\.com'");
    const r = await inspect(gw);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/i);
    const d = decisionLogs(gw).find((l) => l.digest === digest);
    assert.equal(d?.allowed, false);
    assert.equal(d?.reason, 'signature.signer_untrusted');
  });

  test('cosign verify, offline with the same trust material, agrees on both signers', async () => {
    const gw = await gateway('issuer: https://github.com/login/oauth, subject: mitr@redhat.com');
    // cosign 2.5 reads Fulcio, Rekor and CT keys from files named in its environment
    // (without them it asks Sigstore's TUF mirror); every other address is a closed port.
    const root = PUBLIC_GOOD_TRUSTED_ROOT as TrustedRootJson;
    const pem = (b64: string, kind: string) =>
      `-----BEGIN ${kind}-----\n${(
        Buffer.from(b64, 'base64')
          .toString('base64')
          .match(/.{1,64}/g) ?? []
      ).join('\n')}\n-----END ${kind}-----\n`;
    const file = (name: string, text: string) => {
      writeFileSync(join(dir.path, name), text);
      return join(dir.path, name);
    };
    const env = {
      ...process.env,
      HOME: dir.path,
      TUF_ROOT: join(dir.path, 'tuf'),
      HTTPS_PROXY: 'http://127.0.0.1:9',
      HTTP_PROXY: 'http://127.0.0.1:9',
      NO_PROXY: '127.0.0.1',
      SIGSTORE_REKOR_PUBLIC_KEY: file('rekor.pub', pem(root.tlogs[0]?.publicKey.rawBytes ?? '', 'PUBLIC KEY')),
      // cosign reads one CT key from the file: the log that was current in 2023 (ctfe 2022).
      SIGSTORE_CT_LOG_PUBLIC_KEY_FILE: file(
        'ctlog.pub',
        pem(root.ctlogs.at(-1)?.publicKey.rawBytes ?? '', 'PUBLIC KEY'),
      ),
      SIGSTORE_ROOT_FILE: file(
        'fulcio.pem',
        root.certificateAuthorities
          .flatMap((ca) => ca.certChain.certificates.map((c) => pem(c.rawBytes, 'CERTIFICATE')))
          .join(''),
      ),
    };
    const verify = (identity: string) =>
      run(
        'cosign',
        [
          'verify',
          '--offline',
          '--certificate-identity',
          identity,
          '--certificate-oidc-issuer',
          'https://github.com/login/oauth',
          '--allow-http-registry',
          '--allow-insecure-registry',
          `${gw.host}/up/${REPO}@${digest}`,
        ],
        { allowFail: true, env },
      );
    const ok = await verify('mitr@redhat.com');
    assert.equal(ok.code, 0, ok.stderr);
    const other = await verify('someone@example.com');
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /identity|subject|none of the expected/i, other.stderr);
  });
});
