import type { Digest } from '../../oci/digest.js';
import { assertDigest } from '../../oci/digest.js';
import { MediaType } from '../../oci/media-types.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../../oci/manifest.js';
import { header } from '../../oci/registry-client/client.js';
import type { CosignSignatureEvidence, Evidence } from '../../policies/model.js';
import type { Upstream } from '../upstreams.js';
import { gatherGpgEvidence } from './gpg-evidence.js';

/**
 * Gathers the signatures for one digest from its upstream: the cosign `.sig` tag in
 * the same repository (FORMATS §4.1). Bounded: at most `maxSignatures` layers, each
 * at most `maxSignatureBytes`, each checked against its descriptor digest. Anything
 * wrong is recorded as a problem for the evaluator, never silently skipped.
 */
export interface EvidenceLimits {
  readonly maxSignatures: number;
  readonly maxSignatureBytes: number;
}

const SIG_ACCEPT = [MediaType.ociManifest, MediaType.dockerManifest].join(', ');
const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** Keyless signatures: the Fulcio certificate, the Rekor SET and entry, an RFC 3161 timestamp. */
const CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
const REKOR_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
const TIMESTAMP_ANNOTATION = 'dev.sigstore.cosign/rfc3161timestamp';

export async function gatherEvidence(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
): Promise<Evidence> {
  const tag = `${digest.algorithm}-${digest.hex}.sig`;
  const problems: { source: string; message: string }[] = [];
  const cosign: CosignSignatureEvidence[] = [];
  const res = await upstream.client.manifest(repository, tag, 'GET', SIG_ACCEPT, MAX_MANIFEST_BYTES);
  if (!res) return { cosign, problems };
  let layers;
  try {
    const m = parseManifest(res.bytes, header(res.headers, 'content-type'));
    if (m.kind !== 'image') throw new Error('the signature tag holds an index, not a manifest');
    layers = m.layers;
  } catch (err) {
    problems.push({ source: `tag ${tag}`, message: `unusable signature manifest: ${(err as Error).message}` });
    return { cosign, problems };
  }
  const signatures = layers.filter((l) => l.mediaType === MediaType.cosignSimpleSigning);
  if (signatures.length > limits.maxSignatures) {
    problems.push({
      source: `tag ${tag}`,
      message: `${signatures.length} signatures; only the first ${limits.maxSignatures} were considered`,
    });
  }
  for (const [i, layer] of signatures.slice(0, limits.maxSignatures).entries()) {
    const source = `tag ${tag} layer ${i}`;
    if (layer.size > limits.maxSignatureBytes) {
      problems.push({
        source,
        message: `signature payload of ${layer.size} bytes exceeds ${limits.maxSignatureBytes}`,
      });
      continue;
    }
    try {
      const payload = await upstream.client.smallBlob(repository, layer.digest.text, layer.size);
      assertDigest(payload, layer.digest);
      if (payload.length !== layer.size)
        throw new Error(`payload has ${payload.length} bytes, descriptor says ${layer.size}`);
      const a = layer.annotations ?? {};
      cosign.push({
        source,
        payload,
        signature: a[SIGNATURE_ANNOTATION] ?? '',
        ...(a[CERTIFICATE_ANNOTATION] !== undefined ? { certificate: a[CERTIFICATE_ANNOTATION] } : {}),
        ...(a[REKOR_BUNDLE_ANNOTATION] !== undefined ? { rekorBundle: a[REKOR_BUNDLE_ANNOTATION] } : {}),
        ...(a[TIMESTAMP_ANNOTATION] !== undefined ? { timestamp: a[TIMESTAMP_ANNOTATION] } : {}),
      });
    } catch (err) {
      problems.push({ source, message: `signature payload unusable: ${(err as Error).message}` });
    }
  }
  return { cosign, problems };
}

/** The evidence a rule asks for: cosign signatures, GPG signatures, or both (nothing else is fetched). */
export async function gatherFormats(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
  formats: ReadonlySet<'cosign' | 'gpg'>,
): Promise<Evidence> {
  const cosign = formats.has('cosign')
    ? await gatherEvidence(upstream, repository, digest, limits)
    : { cosign: [], problems: [] };
  const gpg = formats.has('gpg') ? await gatherGpgEvidence(upstream, repository, digest, limits) : undefined;
  return { ...cosign, gpg: gpg?.gpg, problems: [...cosign.problems, ...(gpg?.problems ?? [])] };
}
