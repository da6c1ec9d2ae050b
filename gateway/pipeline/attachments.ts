import type { Manifest } from '../../oci/manifest.js';

/**
 * Attachments are signatures, attestations and SBOMs stored next to an image
 * (`sha256-<hex>.sig|.att|.sbom` tags, the referrers fallback tag `sha256-<hex>`, or
 * an OCI `subject`). They are served without a policy decision of their own, but only
 * while their subject is admitted in the same repository, and only when every layer
 * is a signature-like media type: an unsigned image dressed up as a `.sig` tag must
 * not slip through as an attachment.
 */
const ATTACHMENT_TAG = /^(sha256)-([0-9a-f]{64})(\.sig|\.att|\.sbom)?$/;

export const ATTACHMENT_LAYER_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.dev.cosign.simplesigning.v1+json',
  'application/vnd.dsse.envelope.v1+json',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.in-toto+json',
  'application/jose+json',
  'application/cose',
  'application/spdx+json',
  'text/spdx',
  'application/vnd.cyclonedx+json',
  'application/vnd.cyclonedx',
]);

/** Config types of signature and attestation manifests (cosign's legacy config is an image config). */
export const ATTACHMENT_CONFIG_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.oci.empty.v1+json',
  'application/vnd.dev.cosign.artifact.sig.v1+json',
  'application/vnd.dev.cosign.artifact.sbom.v1+json',
  'application/vnd.cncf.notary.signature',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
]);

export const MAX_ATTACHMENT_LAYERS = 64;
export const MAX_ATTACHMENT_CONFIG_BYTES = 64 * 1024;
export const MAX_ATTACHMENT_LAYER_BYTES = 16 * 1024 * 1024;

/** The subject digest an attachment tag names, or undefined for ordinary tags. */
export function attachmentSubject(tag: string): { digest: string; suffix: string } | undefined {
  const m = ATTACHMENT_TAG.exec(tag);
  return m ? { digest: `${m[1]}:${m[2]}`, suffix: m[3] ?? '' } : undefined;
}

/** Undefined when `manifest` may be served as an attachment, else why not. */
export function attachmentProblem(manifest: Manifest, suffix: string): string | undefined {
  if (manifest.kind === 'index') {
    return suffix === '' ? undefined : 'an index is an attachment only as the referrers fallback tag';
  }
  if (manifest.layers.length > MAX_ATTACHMENT_LAYERS) return `more than ${MAX_ATTACHMENT_LAYERS} layers`;
  if (!ATTACHMENT_CONFIG_TYPES.has(manifest.config.mediaType))
    return `config type ${manifest.config.mediaType} is not a signature or attestation config`;
  if (manifest.config.size > MAX_ATTACHMENT_CONFIG_BYTES)
    return `config of ${manifest.config.size} bytes is larger than ${MAX_ATTACHMENT_CONFIG_BYTES}`;
  const odd = manifest.layers.find((l) => !ATTACHMENT_LAYER_TYPES.has(l.mediaType));
  if (odd) return `layer type ${odd.mediaType} is not a signature or attestation type`;
  const big = manifest.layers.find((l) => l.size > MAX_ATTACHMENT_LAYER_BYTES);
  return big ? `layer of ${big.size} bytes is larger than ${MAX_ATTACHMENT_LAYER_BYTES}` : undefined;
}
