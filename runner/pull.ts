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
  /** Where notices go (the gateway could not be reached, its answer did not verify). */
  readonly warn?: ((line: string) => void) | undefined;
}

/** The manifest a reference stands for now, with the attestation that passed the check for this run. */
export interface AttestedManifest {
  readonly manifestDigest: Digest;
  readonly manifestBytes: Buffer;
  readonly indexDigest: Digest | undefined;
  readonly summary: VerifiedSummary;
}

const MAX_CONFIG_BYTES = 1024 * 1024;
/** How long a cached run waits for the gateway's word on the digest before it counts as offline. */
export const GATEWAY_CHECK_MS = 2000;

export async function pullImage(
  trust: Trust,
  cache: ImageCache,
  imageText: string,
  opts: PullOptions,
): Promise<PulledImage> {
  const ref = parseImageReference(imageText);
  const { manifestDigest, manifestBytes, summary } = await attestedManifest(trust, cache, imageText, opts);
  const manifest = parseManifest(manifestBytes);
  if (manifest.kind !== 'image') throw new RunnerError('IMAGE_INVALID', 'the cached manifest is not an image manifest');
  await fetchBlobs(trust, cache, ref.repository, ref.host, manifest, opts);
  const config = cache.readSmall(manifest.config.digest, MAX_CONFIG_BYTES);
  if (!config)
    throw new RunnerError('IMAGE_INVALID', `the image config ${manifest.config.digest.text} is missing or too large`);
  return { manifestDigest, manifest, config, layers: manifest.layers, summary };
}

/**
 * The check every run makes, and all that `secure-run verify` does: which digest the
 * reference stands for and an attestation of it that verifies with the pinned key,
 * names this digest and repository, and is younger than --max-age; never one older
 * than the reference already used (no rollback).
 *
 * `--pull missing` with a cached entry asks the gateway for its current attestation of
 * the cached digest (one request, GATEWAY_CHECK_MS at most): a refusal (revoked, denied
 * now, no longer attested) refuses the run and marks the entry refused; a newer attestation
 * replaces the cached one (the gateway renews them); an unreachable gateway leaves
 * the cached attestation to stand on its own, within --max-age.
 */
export async function attestedManifest(
  trust: Trust,
  cache: ImageCache,
  imageText: string,
  opts: PullOptions,
): Promise<AttestedManifest> {
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
  const record = (digest: Digest, bytes: Buffer, index: Digest | undefined, envelope: Buffer, s: VerifiedSummary) => {
    const envelopeDigest = digestOf(envelope);
    cache.putSmall(digest, bytes);
    cache.putSmall(envelopeDigest, envelope);
    cache.recordRef(key, {
      manifest: digest.text,
      index: index?.text,
      envelope: envelopeDigest.text,
      resolvedAt: now.toISOString(),
      verifiedAt: s.timeVerified.toISOString(),
      firstAdmitted: (s.firstAdmitted ?? s.timeVerified).toISOString(),
    });
  };
  if (cached?.refused !== undefined && opts.pull === 'never')
    throw new RunnerError(
      'NOT_CACHED',
      `the gateway refused ${imageText} at ${cached.refused}: it is not run from the cache; run it online to ask again`,
    );
  if (opts.pull === 'never' || (opts.pull === 'missing' && cached && cached.refused === undefined)) {
    if (!cached) throw new RunnerError('NOT_CACHED', `${imageText} is not in the cache and --pull never was given`);
    const digest = parseDigest(cached.manifest);
    const index = cached.index !== undefined ? parseDigest(cached.index) : undefined;
    const m = cache.readSmall(digest, MAX_MANIFEST_BYTES);
    const e = cache.readSmall(parseDigest(cached.envelope), MAX_ENVELOPE_BYTES);
    if (!m || !e) {
      if (opts.pull === 'never')
        throw new RunnerError('NOT_CACHED', `the cache entry of ${imageText} is incomplete: pull it again`);
    } else {
      // The check that counts: with the pinned key, for this digest and name, now.
      let local: VerifiedSummary | undefined;
      let stale: RunnerError | undefined;
      try {
        local = check(digest, e);
      } catch (err) {
        // An expired cached attestation may be renewed by the gateway, unless told to stay offline.
        if (!(err instanceof RunnerError && err.code === 'ATTESTATION_EXPIRED' && opts.pull === 'missing')) throw err;
        stale = err;
      }
      if (opts.pull === 'never' && local)
        return { manifestDigest: digest, manifestBytes: m, indexDigest: index, summary: local };
      const { askGatewayAbout } = await import('./gateway-check.js');
      const answer: { envelope?: Buffer; refused?: RunnerError; unreachable?: RunnerError } = await askGatewayAbout(
        trust,
        ref,
        digest,
        GATEWAY_CHECK_MS,
      );
      if (answer.refused) {
        cache.markRefused(key, now);
        throw answer.refused;
      }
      if (answer.envelope) {
        let fresh: VerifiedSummary | undefined;
        try {
          fresh = check(digest, answer.envelope);
        } catch (err) {
          // The gateway is reachable and vouches with something that fails the check: refuse,
          // unless it merely holds an older attestation than the cached one (which then stands).
          if (!(err instanceof RunnerError && err.code === 'ATTESTATION_EXPIRED' && local)) {
            cache.markRefused(key, now);
            // A well-formed envelope whose signatures are all by other keys: the gateway's key changed.
            const badSignature = (err as { cause?: { code?: string } }).cause?.code === 'attestation.bad_signature';
            throw badSignature
              ? new RunnerError(
                  'TRUST_MISMATCH',
                  `the gateway's current attestation of ${digest.text} is not signed by the pinned key ${trust.fingerprint}: if its operator rotated the gateway's key, confirm the new fingerprint with them and pin it (secure-run trust ${trust.gateway} --fingerprint sha256:…)`,
                  { cause: err },
                )
              : err;
          }
        }
        if (fresh && (!local || fresh.timeVerified.getTime() >= local.timeVerified.getTime())) {
          record(digest, m, index, answer.envelope, fresh);
          return { manifestDigest: digest, manifestBytes: m, indexDigest: index, summary: fresh };
        }
      } else if (answer.unreachable && local) {
        opts.warn?.(
          `secure-run: ${answer.unreachable.message}; running the cached image on its attestation of ${local.timeVerified.toISOString()}`,
        );
      }
      if (local) return { manifestDigest: digest, manifestBytes: m, indexDigest: index, summary: local };
      throw answer.unreachable
        ? new RunnerError(
            'ATTESTATION_EXPIRED',
            `${(stale as RunnerError).message}, and the gateway could not renew it: ${answer.unreachable.message}`,
            { cause: answer.unreachable },
          )
        : (stale as RunnerError);
    }
  }
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
  // No rollback by digest either: renewal gives an old digest a fresh attestation, but
  // not a later first admission. A tag moved back to an older image is refused.
  if (cached && cached.manifest !== v.image.manifestDigest.text) {
    const before = Date.parse(cached.firstAdmitted ?? cached.verifiedAt ?? '');
    const after = (v.summary.firstAdmitted ?? v.summary.timeVerified).getTime();
    if (Number.isFinite(before) && after < before)
      throw new RunnerError(
        'ATTESTATION_EXPIRED',
        `${imageText} now resolves to ${v.image.manifestDigest.text}, which the gateway first admitted at ${new Date(after).toISOString()}, before ${cached.manifest} (${new Date(before).toISOString()}) that this reference already used: a tag moved back is refused as a rollback; run it by digest if that is intended`,
      );
  }
  // verifyImage made the same check (pinned key, this digest and name, --max-age, now).
  const { manifestDigest } = v.image;
  const { summary } = v;
  record(manifestDigest, v.image.manifestBytes, v.image.indexDigest, v.envelope, summary);
  return { manifestDigest, manifestBytes: v.image.manifestBytes, indexDigest: v.image.indexDigest, summary };
}

/**
 * After an unpack failed: every cached layer of the image is hashed again, and those
 * that no longer match their digest are dropped and, unless --pull never, fetched
 * again from the gateway. True when something was replaced (the unpack is worth
 * another try); false when the cached layers are sound (the image itself is bad).
 */
export async function healLayers(
  trust: Trust,
  cache: ImageCache,
  imageText: string,
  manifest: ImageManifest,
  opts: PullOptions,
): Promise<boolean> {
  const bad: Descriptor[] = [];
  for (const d of manifest.layers) if (!(await cache.verify(d.digest))) bad.push(d);
  if (bad.length === 0) return false;
  for (const d of bad) cache.remove(d.digest);
  const list = bad.map((d) => d.digest.text).join(', ');
  if (opts.pull === 'never')
    throw new RunnerError(
      'LAYER_DIGEST_MISMATCH',
      `cached layer(s) ${list} of ${imageText} no longer match their digests and were removed: run without --pull never to fetch them again`,
    );
  opts.warn?.(`secure-run: cached layer(s) ${list} no longer matched their digests; fetching them again`);
  const ref = parseImageReference(imageText);
  await fetchBlobs(trust, cache, ref.repository, ref.host, manifest, opts);
  return true;
}

async function fetchBlobs(
  trust: Trust,
  cache: ImageCache,
  repository: string,
  host: string,
  manifest: ImageManifest,
  opts: PullOptions,
): Promise<void> {
  // The config is small: checked by its hash (a bad copy is fetched again); layers by size
  // here, and by digest when an unpack fails (healLayers).
  const configOk = cache.readSmall(manifest.config.digest, MAX_CONFIG_BYTES) !== undefined;
  const missing = [
    ...(configOk ? [] : [manifest.config]),
    ...manifest.layers.filter((d) => !cache.has(d.digest, d.size)),
  ];
  if (missing.length === 0) return;
  if (opts.pull === 'never')
    throw new RunnerError(
      'NOT_CACHED',
      `${missing.length} blob(s) of the image are not cached and --pull never was given`,
    );
  const { gatewayClient } = await import('./gateway-client.js');
  const client = gatewayClient(trust, { host });
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
