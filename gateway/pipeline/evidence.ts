import { createHash } from 'node:crypto';
import type { Digest } from '../../oci/digest.js';
import { assertDigest, parseDigest as parseDigestText } from '../../oci/digest.js';
import { MediaType } from '../../oci/media-types.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../../oci/manifest.js';
import { header } from '../../oci/registry-client/client.js';
import type { EvidenceFormat } from '../../policies/evaluator.js';
import type {
  BundleEvidence,
  CosignSignatureEvidence,
  DsseEvidence,
  Evidence,
  NotationEvidence,
} from '../../policies/model.js';
import { COSE_MEDIA_TYPE, JWS_MEDIA_TYPE } from '../../policies/verifiers/notation-envelope.js';
import { listReferrers } from './listings.js';
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
const CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';

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
        ...(a[CHAIN_ANNOTATION] !== undefined ? { chain: a[CHAIN_ANNOTATION] } : {}),
      });
    } catch (err) {
      problems.push({ source, message: `signature payload unusable: ${(err as Error).message}` });
    }
  }
  return { cosign, problems };
}

/** Layer types of Sigstore bundles, and the artifact types of referrers that hold them. */
const BUNDLE_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.dev.sigstore.bundle.v0.3+json',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
  'application/vnd.dev.sigstore.bundle+json;version=0.1',
]);
const DSSE_LAYER = 'application/vnd.dsse.envelope.v1+json';
const EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';

/**
 * The layers of one signature-like manifest (by tag or digest) whose type is in
 * `types`, fetched and checked against their descriptors, bounded like signatures.
 */
async function signatureLayers(
  upstream: Upstream,
  repository: string,
  reference: string,
  label: string,
  types: ReadonlySet<string>,
  limits: EvidenceLimits,
  problems: { source: string; message: string }[],
): Promise<{ source: string; bytes: Buffer; mediaType: string; annotations: Readonly<Record<string, string>> }[]> {
  const res = await upstream.client.manifest(repository, reference, 'GET', SIG_ACCEPT, MAX_MANIFEST_BYTES);
  if (!res) return [];
  let layers;
  try {
    if (reference.includes(':')) assertDigest(res.bytes, parseDigestText(reference));
    const m = parseManifest(res.bytes, header(res.headers, 'content-type'));
    if (m.kind !== 'image') throw new Error('an index, not a manifest');
    layers = m.layers.filter((l) => types.has(l.mediaType));
  } catch (err) {
    problems.push({ source: label, message: `unusable manifest: ${(err as Error).message}` });
    return [];
  }
  if (layers.length > limits.maxSignatures)
    problems.push({
      source: label,
      message: `${layers.length} layers; only the first ${limits.maxSignatures} were considered`,
    });
  const out = [];
  for (const [i, layer] of layers.slice(0, limits.maxSignatures).entries()) {
    const source = `${label} layer ${i}`;
    if (layer.size > limits.maxSignatureBytes) {
      problems.push({ source, message: `a layer of ${layer.size} bytes exceeds ${limits.maxSignatureBytes}` });
      continue;
    }
    try {
      const bytes = await upstream.client.smallBlob(repository, layer.digest.text, layer.size);
      assertDigest(bytes, layer.digest);
      if (bytes.length !== layer.size) throw new Error(`${bytes.length} bytes, the descriptor says ${layer.size}`);
      out.push({ source, bytes, mediaType: layer.mediaType, annotations: layer.annotations ?? {} });
    } catch (err) {
      problems.push({ source, message: `unusable layer: ${(err as Error).message}` });
    }
  }
  return out;
}

/** Sigstore bundles attached to `digest` through the referrers API (or its fallback tag). */
export async function gatherBundles(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
): Promise<{ bundles: BundleEvidence[]; problems: { source: string; message: string }[] }> {
  // cosign 2.5 lists its bundles in the fallback tag under the config's type (the empty
  // type), not the manifest's artifactType: those are looked into too (bounded as below).
  const found = await referrerLayers(
    upstream,
    repository,
    digest,
    limits,
    'bundles',
    (t) => t === undefined || t === EMPTY_TYPE || BUNDLE_TYPES.has(t),
    BUNDLE_TYPES,
  );
  return { bundles: found.layers.map((l) => ({ source: l.source, bundle: l.bytes })), problems: found.problems };
}

const NOTATION_TYPE = 'application/vnd.cncf.notary.signature';
const NOTATION_ENVELOPES: ReadonlySet<string> = new Set([JWS_MEDIA_TYPE, COSE_MEDIA_TYPE]);

/** Notary Project signatures attached to `digest`: the envelope layers of its `application/vnd.cncf.notary.signature` referrers. */
export async function gatherNotation(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
): Promise<{ notation: NotationEvidence[]; problems: { source: string; message: string }[] }> {
  const found = await referrerLayers(
    upstream,
    repository,
    digest,
    limits,
    'Notation signatures',
    (t) => t === NOTATION_TYPE,
    NOTATION_ENVELOPES,
  );
  return {
    notation: found.layers.map((l) => ({ source: l.source, mediaType: l.mediaType, envelope: l.bytes })),
    problems: found.problems,
  };
}

/**
 * The layers of `layerTypes` in the referrers of `digest` whose artifact type `wanted`
 * accepts: at most maxSignatures in all (not per referrer), each once — a layer served
 * many times is one.
 */
async function referrerLayers(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
  what: string,
  wanted: (artifactType: string | undefined) => boolean,
  layerTypes: ReadonlySet<string>,
): Promise<{
  layers: { source: string; bytes: Buffer; mediaType: string }[];
  problems: { source: string; message: string }[];
}> {
  const problems: { source: string; message: string }[] = [];
  const source = `referrers of ${digest.text}`;
  let entries;
  try {
    entries = (await listReferrers({ upstream, repository }, digest, undefined)).manifests.filter(
      (d) => d.mediaType === MediaType.ociManifest && wanted(d.artifactType),
    );
  } catch (err) {
    problems.push({ source, message: `unusable referrers list: ${(err as Error).message}` });
    return { layers: [], problems };
  }
  const tooMany = `more than ${limits.maxSignatures} ${what}; only the first ${limits.maxSignatures} were considered`;
  if (entries.length > limits.maxSignatures) problems.push({ source, message: tooMany });
  const layers: { source: string; bytes: Buffer; mediaType: string }[] = [];
  const seen = new Set<string>();
  for (const d of entries.slice(0, limits.maxSignatures)) {
    if (layers.length >= limits.maxSignatures) {
      problems.push({ source, message: tooMany });
      break;
    }
    const label = `referrer ${d.digest.text}`;
    for (const l of await signatureLayers(upstream, repository, d.digest.text, label, layerTypes, limits, problems)) {
      const id = createHash('sha256').update(l.bytes).digest('hex');
      if (seen.has(id) || layers.length >= limits.maxSignatures) continue;
      seen.add(id);
      layers.push({ source: l.source, bytes: l.bytes, mediaType: l.mediaType });
    }
  }
  return { layers, problems };
}

/** cosign's attestations of `digest`: the DSSE layers of the `sha256-<hex>.att` tag. */
export async function gatherAttestations(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
): Promise<{ attestations: DsseEvidence[]; problems: { source: string; message: string }[] }> {
  const problems: { source: string; message: string }[] = [];
  const tag = `${digest.algorithm}-${digest.hex}.att`;
  const layers = await signatureLayers(
    upstream,
    repository,
    tag,
    `tag ${tag}`,
    new Set([DSSE_LAYER]),
    limits,
    problems,
  );
  const attestations = layers.map((l) => ({
    source: l.source,
    envelope: l.bytes,
    ...(l.annotations[CERTIFICATE_ANNOTATION] !== undefined
      ? { certificate: l.annotations[CERTIFICATE_ANNOTATION] }
      : {}),
    ...(l.annotations[REKOR_BUNDLE_ANNOTATION] !== undefined
      ? { rekorBundle: l.annotations[REKOR_BUNDLE_ANNOTATION] }
      : {}),
    ...(l.annotations[TIMESTAMP_ANNOTATION] !== undefined ? { timestamp: l.annotations[TIMESTAMP_ANNOTATION] } : {}),
  }));
  return { attestations, problems };
}

/** The evidence a rule asks for (formatsFor): nothing else is fetched. `manifest` is what is being decided. */
export async function gatherFormats(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
  formats: ReadonlySet<EvidenceFormat>,
  manifest?: Uint8Array,
): Promise<Evidence> {
  const cosign = formats.has('cosign')
    ? await gatherEvidence(upstream, repository, digest, limits)
    : { cosign: [], problems: [] };
  const gpg = formats.has('gpg') ? await gatherGpgEvidence(upstream, repository, digest, limits) : undefined;
  const bundles = formats.has('bundles') ? await gatherBundles(upstream, repository, digest, limits) : undefined;
  const att = formats.has('attestations') ? await gatherAttestations(upstream, repository, digest, limits) : undefined;
  const notation = formats.has('notation') ? await gatherNotation(upstream, repository, digest, limits) : undefined;
  return {
    ...cosign,
    gpg: gpg?.gpg,
    ...(bundles ? { bundles: bundles.bundles } : {}),
    ...(att ? { attestations: att.attestations } : {}),
    ...(notation ? { notation: notation.notation } : {}),
    ...(manifest ? { manifest } : {}),
    problems: [
      ...cosign.problems,
      ...(gpg?.problems ?? []),
      ...(bundles?.problems ?? []),
      ...(att?.problems ?? []),
      ...(notation?.problems ?? []),
    ],
  };
}
