import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { payloadFor, signJws, testCert } from '../helpers/notation-signer.js';
import { run } from '../helpers/peers.js';
import { pushBlob, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { putManifest } from '../helpers/sigstore-images.js';
import { timestampToken } from '../helpers/timestamp-authority.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Notary Project signatures through the gateway, docker-registry as the upstream and
 * skopeo as the client: notation-go's real alpine image (an OCI layout with all its
 * blobs) and its real JWS and COSE signatures, attached as referrers through the
 * `sha256-<hex>` fallback tag (distribution 2.8 has no referrers API), decided under
 * Notation's own trustpolicy.oci.json and trust-store directory, unchanged.
 */
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/notation/notation-go/', import.meta.url));
const BLOBS = join(FIXTURE, 'oci-layout/blobs/sha256');
const MANIFEST_HEX = '19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0';
const DIGEST = `sha256:${MANIFEST_HEX}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const NOTATION = 'application/vnd.cncf.notary.signature';
const jws = readFileSync(join(FIXTURE, 'jws_signature.sig'));
const signingCert = Buffer.from(
  (JSON.parse(jws.toString()) as { header: { x5c: string[] } }).header.x5c[0] as string,
  'base64',
);

const trustPolicy = (identity: string, level = 'strict', trustStores = ['ca:notary']) =>
  JSON.stringify({
    version: '1.0',
    trustPolicies: [
      {
        name: 'alpine',
        registryScopes: ['*'],
        signatureVerification: { level },
        trustStores,
        trustedIdentities: [identity],
      },
    ],
  });

// A signing certificate that expired five days ago, and a timestamp authority that saw it sign seven days ago.
const subject = (cn: string) => ({ C: 'US', ST: 'WA', O: 'Portcullis Test', CN: cn });
const codeRoot = testCert({ subject: subject('code root'), ca: true, days: [-60, 60] });
const expiredSigner = testCert({ subject: subject('builder'), issuer: codeRoot, days: [-10, -5], eku: 'codeSigning' });
const tsaRoot = testCert({ subject: subject('tsa root'), ca: true, days: [-60, 60] });
const tsa = testCert({ subject: subject('tsa'), issuer: tsaRoot, days: [-30, 30], eku: 'timeStamping' });

describe('Notation signatures are verified through the gateway', () => {
  let registry: TestRegistry;
  const gateways: TestGateway[] = [];
  const out = tempDir('portcullis-notation-');

  /** The alpine image in `repo`, tagged 1, with the envelope (JWS or COSE) attached. */
  const signedImage = async (repo: string, envelope?: { mediaType: string; bytes: Buffer }) => {
    for (const hex of [
      '572996c3caeacea40b947911a9dda21516c082b5a64af30048a02a6f5eb956d4',
      '63b65145d645c1250c391b2d16ebe53b3747c295ca8ba2fcb6b0cf064a4dc21c',
    ])
      await pushBlob(registry, repo, readFileSync(join(BLOBS, hex)));
    await putManifest(registry, repo, '1', OCI_MANIFEST, readFileSync(join(BLOBS, MANIFEST_HEX)).toString('utf8'));
    if (!envelope) return;
    const layer = await pushBlob(registry, repo, envelope.bytes);
    const empty = await pushBlob(registry, repo, Buffer.from('{}'));
    const signature = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: NOTATION,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: empty },
      layers: [{ mediaType: envelope.mediaType, size: envelope.bytes.length, digest: layer }],
      subject: { mediaType: OCI_MANIFEST, size: 481, digest: DIGEST },
      annotations: {
        'io.cncf.notary.x509chain.thumbprint#S256': JSON.stringify([
          createHash('sha256').update(signingCert).digest('hex'),
        ]),
      },
    });
    const sigDigest = `sha256:${createHash('sha256').update(signature).digest('hex')}`;
    await putManifest(registry, repo, sigDigest, OCI_MANIFEST, signature);
    await putManifest(
      registry,
      repo,
      `sha256-${MANIFEST_HEX}`,
      OCI_INDEX,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, size: signature.length, digest: sigDigest, artifactType: NOTATION }],
      }),
    );
  };

  const gateway = async (
    policy: string,
    files: Record<string, Buffer | string> = { 'truststore/x509/ca/notary/alpine.crt': signingCert },
  ) => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy,
      policyFile: 'trustpolicy.oci.json',
      files,
    });
    gateways.push(gw);
    return gw;
  };
  const copy = (gw: TestGateway, repo: string) =>
    run(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/${repo}:1`,
        `dir:${join(out.path, `${gw.running.port}-${repo.replace('/', '-')}`)}`,
      ],
      { allowFail: true },
    );
  const decision = (gw: TestGateway) => decisionLogs(gw).find((l) => l.digest === DIGEST);

  before(async () => {
    registry = await startRegistry();
    await signedImage('jws/alpine', { mediaType: 'application/jose+json', bytes: jws });
    await signedImage('cose/alpine', {
      mediaType: 'application/cose',
      bytes: readFileSync(join(FIXTURE, 'cose_signature.sig')),
    });
    await signedImage('unsigned/alpine');
    const payload = payloadFor(DIGEST, 481);
    const stamped = signJws([expiredSigner, codeRoot], payload, {
      countersign: (sig) => timestampToken(tsa, sig, { at: new Date(Date.now() - 7 * 86_400_000) }),
    });
    await signedImage('stamped/alpine', { mediaType: 'application/jose+json', bytes: stamped });
    await signedImage('unstamped/alpine', {
      mediaType: 'application/jose+json',
      bytes: signJws([expiredSigner, codeRoot], payload),
    });
  });
  after(async () => {
    for (const gw of gateways) await gw.stop();
    await registry?.stop();
    out.cleanup();
  });

  test('the real JWS and COSE signatures admit the image under trustpolicy.oci.json', async () => {
    const gw = await gateway(trustPolicy('x509.subject: C=US, ST=WA, O=Notary, CN=alpine'));
    for (const repo of ['jws/alpine', 'cose/alpine']) {
      const r = await copy(gw, repo);
      assert.equal(r.code, 0, r.stderr);
      const d = decisionLogs(gw)
        .filter((l) => l.digest === DIGEST)
        .at(-1);
      assert.equal(d?.allowed, true, repo);
    }
  });

  test('another identity, or no signature, is denied with its code and nothing is served', async () => {
    const other = await gateway(trustPolicy('x509.subject: C=US, ST=WA, O=Someone Else'));
    const r = await copy(other, 'jws/alpine');
    assert.notEqual(r.code, 0);
    assert.equal(decision(other)?.reason, 'signature.signer_untrusted');
    const gw = await gateway(trustPolicy('x509.subject: C=US, ST=WA, O=Notary, CN=alpine'));
    assert.notEqual((await copy(gw, 'unsigned/alpine')).code, 0);
    assert.equal(decision(gw)?.reason, 'signature.missing');
    // audit logs an untrusted identity and admits.
    const audit = await gateway(trustPolicy('x509.subject: C=US, ST=WA, O=Someone Else', 'audit'));
    assert.equal((await copy(audit, 'cose/alpine')).code, 0);
  });

  test('a signature timestamped while its certificate was valid is admitted under a tsa trust store', async () => {
    const gw = await gateway(
      trustPolicy('x509.subject: C=US, ST=WA, O=Portcullis Test', 'strict', ['ca:test', 'tsa:test']),
      {
        'truststore/x509/ca/test/root.pem': codeRoot.pem,
        'truststore/x509/tsa/test/root.pem': tsaRoot.pem,
      },
    );
    const r = await copy(gw, 'stamped/alpine');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(decision(gw)?.allowed, true);
    const bare = await gateway(
      trustPolicy('x509.subject: C=US, ST=WA, O=Portcullis Test', 'strict', ['ca:test', 'tsa:test']),
      {
        'truststore/x509/ca/test/root.pem': codeRoot.pem,
        'truststore/x509/tsa/test/root.pem': tsaRoot.pem,
      },
    );
    assert.notEqual((await copy(bare, 'unstamped/alpine')).code, 0);
    assert.equal(decision(bare)?.reason, 'signature.timestamp_invalid');
  });
});
