import { createHash } from 'node:crypto';
import { digestOf, type Digest } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.js';
import { header, RegistryClient } from '../oci/registry-client/client.js';
import type { ImageReference } from '../oci/reference.js';
import { MAX_ENVELOPE_BYTES, VSA_PREDICATE_TYPE } from '../policies/attestation.js';
import { RunnerError } from './errors.js';
import { fromGateway } from './gateway-errors.js';
import type { Platform } from './platform.js';
import { gatewayCa } from './gateway-tls.js';
import type { Trust } from './settings.js';

/**
 * secure-run's view of the gateway: resolve an image (choosing the platform from an
 * index), and collect the gateway's attestation envelopes for a manifest digest.
 * Everything fetched is checked against its digest; counts and sizes are bounded.
 * The gateway is asked with `?ns=<registry>`, so any upstream it is configured for
 * can be named by its own host.
 */
export interface ResolvedImage {
  readonly manifestDigest: Digest;
  readonly manifestBytes: Buffer;
  readonly manifest: ImageManifest;
  /** The index it was chosen from, when the reference named one. */
  readonly indexDigest: Digest | undefined;
}

const ACCEPT = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerList].join(', ');
const MAX_ATTESTATION_LAYERS = 16;
/** The gateway marks its own attestation layers (and strips the mark from upstream content). */
const GATEWAY_MARK = 'dev.portcullis.attestation';

export function gatewayClient(
  trust: Pick<Trust, 'gateway' | 'caPem'>,
  ref: Pick<ImageReference, 'host'>,
): RegistryClient {
  return new RegistryClient({
    baseUrl: trust.gateway,
    namespace: ref.host,
    retries: 1,
    ...(trust.gateway.startsWith('https:') ? { ca: gatewayCa(trust) } : {}),
  });
}

export async function resolveImage(
  client: RegistryClient,
  ref: ImageReference,
  platform: Platform,
): Promise<ResolvedImage> {
  const first = await fetchManifest(client, ref.repository, ref.digest?.text ?? (ref.tag as string), ref.digest);
  if (first.manifest.kind === 'image')
    return {
      manifestDigest: first.digest,
      manifestBytes: first.bytes,
      manifest: first.manifest,
      indexDigest: undefined,
    };
  const child = first.manifest.manifests.find((d) => matches(d, platform));
  if (!child) {
    const offered = first.manifest.manifests
      .map((d) =>
        d.platform
          ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}`
          : '?',
      )
      .join(', ');
    throw new RunnerError(
      'PLATFORM_UNAVAILABLE',
      `no ${platform.os}/${platform.architecture} image in the index (offered: ${offered})`,
    );
  }
  const second = await fetchManifest(client, ref.repository, child.digest.text, child.digest);
  if (second.manifest.kind !== 'image')
    throw new RunnerError('IMAGE_INVALID', 'an index inside an index is not supported');
  return {
    manifestDigest: second.digest,
    manifestBytes: second.bytes,
    manifest: second.manifest,
    indexDigest: first.digest,
  };
}

function matches(d: Descriptor, p: Platform): boolean {
  return (
    d.platform !== undefined &&
    d.platform.os === p.os &&
    d.platform.architecture === p.architecture &&
    (p.variant === undefined || d.platform.variant === p.variant)
  );
}

async function fetchManifest(
  client: RegistryClient,
  repository: string,
  reference: string,
  expected: Digest | undefined,
) {
  const what = `${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
  const res = await client.manifest(repository, reference, 'GET', ACCEPT, MAX_MANIFEST_BYTES).catch((err: unknown) => {
    throw fromGateway(err, what, client.baseUrl.origin);
  });
  if (!res) throw new RunnerError('IMAGE_UNAVAILABLE', `the gateway does not know ${repository}:${reference}`);
  const digest = digestOf(res.bytes, expected?.algorithm ?? 'sha256');
  if (expected && digest.hex !== expected.hex)
    throw new RunnerError(
      'IMAGE_INVALID',
      `the gateway sent a manifest hashing to ${digest.text} for ${expected.text}`,
    );
  let manifest;
  try {
    manifest = parseManifest(res.bytes, header(res.headers, 'content-type'));
  } catch (err) {
    throw new RunnerError('IMAGE_INVALID', `manifest ${digest.text}: ${(err as Error).message}`, { cause: err });
  }
  return { digest, bytes: res.bytes, manifest };
}

/** The gateway's verification-summary envelopes for `subject`, from its `.att` tag (bounded). */
export async function fetchAttestationEnvelopes(
  client: RegistryClient,
  repository: string,
  subject: Digest,
): Promise<Buffer[]> {
  const tag = `${subject.algorithm}-${subject.hex}.att`;
  const res = await client
    .manifest(repository, tag, 'GET', MediaType.ociManifest, MAX_MANIFEST_BYTES)
    .catch((err: unknown) => {
      const e = fromGateway(err, `the attestations of ${subject.text}`, client.baseUrl.origin);
      throw e instanceof RunnerError && e.code === 'IMAGE_UNAVAILABLE'
        ? new RunnerError('ATTESTATION_MISSING', e.message, { cause: err, reason: e.reason })
        : e;
    });
  if (!res) return [];
  let manifest;
  try {
    manifest = parseManifest(res.bytes, header(res.headers, 'content-type'));
  } catch (err) {
    throw new RunnerError('ATTESTATION_INVALID', `attestation manifest: ${(err as Error).message}`, { cause: err });
  }
  if (manifest.kind !== 'image') throw new RunnerError('ATTESTATION_INVALID', 'the attestation tag holds an index');
  const ours = manifest.layers
    .filter(
      (l) =>
        l.mediaType === MediaType.dsseEnvelope &&
        l.annotations?.predicateType === VSA_PREDICATE_TYPE &&
        l.annotations?.[GATEWAY_MARK] !== undefined &&
        l.size <= MAX_ENVELOPE_BYTES,
    )
    .slice(-MAX_ATTESTATION_LAYERS);
  const envelopes: Buffer[] = [];
  for (const layer of ours) {
    const bytes = await client.smallBlob(repository, layer.digest.text, layer.size);
    if (createHash(layer.digest.algorithm).update(bytes).digest('hex') !== layer.digest.hex) {
      throw new RunnerError('ATTESTATION_INVALID', `attestation blob does not match ${layer.digest.text}`);
    }
    envelopes.push(bytes);
  }
  return envelopes;
}
