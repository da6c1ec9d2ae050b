import type { Digest } from '../oci/digest.js';
import { digestOf, parseDigest } from '../oci/digest.js';
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.js';
import { formatImageReference, parseImageReference } from '../oci/reference.js';
import { MAX_ENVELOPE_BYTES, type VerifiedSummary } from '../policies/attestation.js';
import { checkAttestation } from './attestation-check.js';
import { RunnerError } from './errors.js';
import { fromGateway } from './gateway-errors.js';
import type { Platform } from './platform.js';
import type { ImageCache } from './image-cache.js';
import { pinnedKey, type Trust } from './settings.js';

/**
 * Gets an image ready to unpack: resolved and attested (online), or taken from the
 * cache; in both cases the attestation is checked with the pinned key right here,
 * for this run. Then the config and every layer are fetched into the cache, each
 * checked against its digest and size while it streams. Nothing is returned, and so
 * nothing unpacked or launched, unless all of that held.
 */
export type PullPolicy = 'always' | 'missing' | 'never';

export interface PulledImage {
  readonly manifestDigest: Digest;
  readonly manifest: ImageManifest;
  readonly config: Buffer;
  readonly layers: readonly Descriptor[];
  readonly summary: VerifiedSummary;
}

export interface PullOptions {
  readonly platform: Platform;
  readonly maxAgeMs: number;
  readonly pull: PullPolicy;
  readonly now?: Date;
  readonly progress?: ((event: { layer: number; of: number; bytes: number; size: number }) => void) | undefined;
}

const MAX_CONFIG_BYTES = 1024 * 1024;

export async function pullImage(
  trust: Trust,
  cache: ImageCache,
  imageText: string,
  opts: PullOptions,
): Promise<PulledImage> {
  const ref = parseImageReference(imageText);
  const key = `${trust.gateway} ${formatImageReference(ref)} ${opts.platform.os}/${opts.platform.architecture}/${opts.platform.variant ?? ''}`;
  const now = opts.now ?? new Date();
  const cached = cache.readRef(key);
  const subjectName = `${ref.host}/${ref.repository}`;
  const check = (digest: Digest, envelope: Buffer) =>
    checkAttestation({
      envelopes: [envelope],
      pinnedKey: pinnedKey(trust),
      manifestDigest: digest.text,
      now,
      maxAgeMs: opts.maxAgeMs,
      subjectName,
    }).summary;
  let manifestDigest: Digest | undefined;
  let manifestBytes: Buffer | undefined;
  let summary: VerifiedSummary | undefined;
  if (opts.pull === 'never' || (opts.pull === 'missing' && cached)) {
    if (!cached) throw new RunnerError('NOT_CACHED', `${imageText} is not in the cache and --pull never was given`);
    const digest = parseDigest(cached.manifest);
    const m = cache.readSmall(digest, MAX_MANIFEST_BYTES);
    const e = cache.readSmall(parseDigest(cached.envelope), MAX_ENVELOPE_BYTES);
    if (!m || !e) {
      if (opts.pull === 'never')
        throw new RunnerError('NOT_CACHED', `the cache entry of ${imageText} is incomplete: pull it again`);
    } else {
      try {
        // The check that counts: with the pinned key, for this digest and name, now.
        summary = check(digest, e);
        manifestDigest = digest;
        manifestBytes = m;
      } catch (err) {
        // An expired cached attestation is refreshed from the gateway unless told to stay offline.
        if (!(err instanceof RunnerError && err.code === 'ATTESTATION_EXPIRED' && opts.pull === 'missing')) throw err;
      }
    }
  }
  if (!manifestDigest || !manifestBytes || !summary) {
    // The network code (and its HTTP client) is loaded only when the network is used:
    // a cached run starts faster. The module names are fixed strings.
    const { verifyImage } = await import('./verify.js');
    const v = await verifyImage(trust, imageText, { platform: opts.platform, maxAgeMs: opts.maxAgeMs, now });
    // No rollback: a reference never goes back to an attestation older than the one it had.
    if (cached?.verifiedAt !== undefined && v.summary.timeVerified.getTime() < Date.parse(cached.verifiedAt)) {
      throw new RunnerError(
        'ATTESTATION_EXPIRED',
        `the gateway offers an attestation from ${v.summary.timeVerified.toISOString()}, older than the one already used for ${imageText} (${cached.verifiedAt})`,
      );
    }
    manifestDigest = v.image.manifestDigest;
    manifestBytes = v.image.manifestBytes;
    summary = check(manifestDigest, v.envelope);
    const envelopeDigest = digestOf(v.envelope);
    cache.putSmall(manifestDigest, manifestBytes);
    cache.putSmall(envelopeDigest, v.envelope);
    cache.recordRef(key, {
      manifest: manifestDigest.text,
      index: v.image.indexDigest?.text,
      envelope: envelopeDigest.text,
      resolvedAt: now.toISOString(),
      verifiedAt: summary.timeVerified.toISOString(),
    });
  }
  const manifest = parseManifest(manifestBytes);
  if (manifest.kind !== 'image') throw new RunnerError('IMAGE_INVALID', 'the cached manifest is not an image manifest');
  await fetchBlobs(trust, cache, ref.repository, ref.host, manifest, opts);
  const config = cache.readSmall(manifest.config.digest, MAX_CONFIG_BYTES);
  if (!config)
    throw new RunnerError('IMAGE_INVALID', `the image config ${manifest.config.digest.text} is missing or too large`);
  return { manifestDigest, manifest, config, layers: manifest.layers, summary };
}

async function fetchBlobs(
  trust: Trust,
  cache: ImageCache,
  repository: string,
  host: string,
  manifest: ImageManifest,
  opts: PullOptions,
): Promise<void> {
  const wanted = [manifest.config, ...manifest.layers];
  const missing = wanted.filter((d) => !cache.has(d.digest, d.size));
  if (missing.length === 0) return;
  if (opts.pull === 'never')
    throw new RunnerError(
      'NOT_CACHED',
      `${missing.length} blob(s) of the image are not cached and --pull never was given`,
    );
  const { gatewayClient } = await import('./gateway-client.js');
  const client = gatewayClient(trust, { host, repository, tag: undefined, digest: manifest.config.digest });
  try {
    // Blobs come from the gateway by digest, or not at all: descriptor `urls` are never followed.
    for (const [i, d] of missing.entries()) {
      const res = await client.blob(repository, d.digest.text).catch((err: unknown) => {
        throw fromGateway(err, `blob ${d.digest.text}`, trust.gateway);
      });
      let done = 0;
      await cache.putStream(d.digest, d.size, res.body, (n) => {
        done += n;
        opts.progress?.({ layer: i + 1, of: missing.length, bytes: done, size: d.size });
      });
    }
  } finally {
    await client.close();
  }
}
