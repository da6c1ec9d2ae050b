import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { plantManifest, pushBlob, type TestRegistry } from './registry.js';

/**
 * go-containerregistry's empty image (from cosign's tests) in a docker-registry, and
 * the real keyless Sigstore bundle v0.3 whose subject it is, attached as a referrer
 * through the `sha256-<hex>` fallback tag (distribution 2.8 has no referrers API).
 */
export const ATTESTATION_FIXTURE = fileURLToPath(
  new URL('../../../test/fixtures/sigstore/cosign-oci-attestation/', import.meta.url),
);
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** Who signed the bundle, as a policy's keyless rule names it. */
export const BUNDLE_SIGNER = 'keyless: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }';
export const BUNDLE_PREDICATE_TYPE = 'https://cosign.sigstore.dev/attestation/v1';

export async function putManifest(
  reg: TestRegistry,
  repo: string,
  ref: string,
  type: string,
  body: string,
): Promise<void> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    headers: { 'content-type': type },
    body,
  });
  assert.equal(res.status, 201, await res.text());
}

/** The empty image, in `repo`, tagged `1`; its digest. */
export async function emptyImage(reg: TestRegistry, repo: string): Promise<string> {
  await pushBlob(reg, repo, readFileSync(join(ATTESTATION_FIXTURE, 'config.json')));
  const manifest = readFileSync(join(ATTESTATION_FIXTURE, 'manifest.json'));
  await putManifest(reg, repo, '1', DOCKER_MANIFEST, manifest.toString('utf8'));
  return plantManifest(reg, repo, manifest);
}

/** The empty image with the real bundle attached; its digest. */
export async function attestedEmptyImage(reg: TestRegistry, repo: string): Promise<string> {
  const digest = await emptyImage(reg, repo);
  const bundle = readFileSync(join(ATTESTATION_FIXTURE, 'bundle.sigstore.json'));
  const layer = await pushBlob(reg, repo, bundle);
  const empty = await pushBlob(reg, repo, Buffer.from('{}'));
  const referrer = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: BUNDLE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: empty },
    layers: [{ mediaType: BUNDLE, size: bundle.length, digest: layer }],
    subject: { mediaType: DOCKER_MANIFEST, size: 264, digest },
  });
  const referrerDigest = plantManifest(reg, repo, Buffer.from(referrer));
  await putManifest(
    reg,
    repo,
    digest.replace(':', '-'),
    OCI_INDEX,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, size: referrer.length, digest: referrerDigest, artifactType: BUNDLE }],
    }),
  );
  return digest;
}
