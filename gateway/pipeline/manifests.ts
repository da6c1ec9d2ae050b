import type { Logger } from 'pino';
import { digestOf, parseDigest, type Digest } from '../../oci/digest.js';
import { OciError, UpstreamError } from '../../oci/errors.js';
import { MAX_MANIFEST_BYTES, parseManifest, referencedBlobs, type Manifest } from '../../oci/manifest.js';
import { MANIFEST_MEDIA_TYPES } from '../../oci/media-types.js';
import { header } from '../../oci/registry-client/client.js';
import type { ManifestRef } from '../../oci/reference.js';
import {
  comparesTag,
  evaluate,
  formatsFor,
  nameRefusal,
  ruleFor,
  ruleNameFor,
  tagRefusal,
} from '../../policies/evaluator.js';
import type { CompiledPolicy, Decision, Evidence } from '../../policies/model.js';
import type { ResourceRef } from '../../policies/attestation.js';
import type { AttestationService, StoredEnvelope } from '../attestations.js';
import { DeniedError, GatewayError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { AdmittedManifest, ManifestKind, MetadataStore } from '../metadata/metadata-store.js';
import type { BlobStore } from '../store/blob-store.js';
import type { Address } from '../upstreams.js';
import { attachmentProblem, attachmentSubject } from './attachments.js';
import { attachmentSource, checkAttachmentContent } from './attachment-content.js';
import { gatherFormats, type EvidenceLimits } from './evidence.js';
import { SingleFlight } from './single-flight.js';

/**
 * The manifest half of the pull-through pipeline:
 *   resolve (tag → digest, re-checked upstream) → fetch bytes → hash them ourselves →
 *   gather evidence → evaluate → deny (nothing stored) | admit (bytes + links) → serve.
 * Raw bytes are stored and served byte-exact; nothing is re-serialised. An admission
 * holds only under the policy that made it: under another policy the stored bytes
 * are decided again before they are served.
 */
export interface ServedManifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
  /** Served while the upstream could not be asked (`upstreamDown: serve-verified`): said in a Warning header. */
  readonly stale?: string;
}

export interface ManifestServiceDeps {
  readonly store: BlobStore;
  readonly metadata: MetadataStore;
  readonly policy: () => CompiledPolicy;
  readonly limits: EvidenceLimits;
  readonly tagTtlSeconds: number;
  /** An attestation older than this is verified again and re-signed when it is next asked for. */
  readonly renewAfterSeconds: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly attestations: AttestationService;
  readonly now: () => number;
}

/** How a manifest was asked for: only by digest may a `subject` make it an attachment. */
type Route = 'tag' | 'digest';

/** How long a renewal that failed upstream waits before it is tried again. */
const RENEWAL_RETRY_MS = 60_000;

export class ManifestService {
  readonly #flights = new SingleFlight<ServedManifest>();
  readonly #refills = new SingleFlight<Buffer | undefined>();
  readonly #touched = new Map<string, number>();
  readonly #renewalFailedAt = new Map<string, number>();

  constructor(private readonly deps: ManifestServiceDeps) {}

  async get(addr: Address, ref: ManifestRef, accept: string | undefined): Promise<ServedManifest> {
    this.refuseByName(addr, ref.kind === 'tag' ? { tag: ref.tag } : { digest: ref.digest });
    const served =
      ref.kind === 'tag' ? await this.#byTag(addr, ref.tag, accept) : await this.#byDigest(addr, ref.digest, accept);
    if (!acceptable(served.mediaType, accept)) {
      throw new GatewayError(
        'MANIFEST_UNKNOWN',
        `manifest is ${served.mediaType}, which the request's Accept header does not list`,
      );
    }
    return served;
  }

  /**
   * Refuses at once what the policy rejects by the name (and tag or digest) asked for:
   * nothing is fetched upstream, and the answer names only what the client asked for.
   */
  refuseByName(addr: Address, asked: { tag?: string | undefined; digest?: Digest | undefined } = {}): void {
    const refusal = nameRefusal(this.deps.policy(), { name: addr.name, ...asked });
    if (refusal) this.#refuse(addr, refusal, asked);
  }

  /** A refusal decided before any content was seen: logged (no digest to record it under), then thrown. */
  #refuse(addr: Address, refusal: Decision, asked: { tag?: string | undefined; digest?: Digest | undefined }): never {
    this.deps.logger.info(
      {
        event: 'decision',
        repository: addr.name,
        ...(asked.tag !== undefined ? { tag: asked.tag } : {}),
        ...(asked.digest !== undefined ? { digest: asked.digest.text } : {}),
        policy: refusal.policyDigest,
        allowed: false,
        rule: refusal.rule,
        reason: refusal.denial,
        reasons: [refusal.denial],
      },
      'denied',
    );
    const what =
      asked.tag !== undefined
        ? `${addr.name}:${asked.tag}`
        : asked.digest !== undefined
          ? `${addr.name}@${asked.digest.text}`
          : addr.name;
    throw new DeniedError(refusal, what);
  }

  async #byTag(addr: Address, tag: string, accept: string | undefined): Promise<ServedManifest> {
    const attachment = attachmentSubject(tag);
    if (attachment) return this.#attachmentByTag(addr, tag, attachment, accept);
    const policy = this.deps.policy();
    const refusal = tagRefusal(policy, { name: addr.name, tag });
    if (refusal) this.#refuse(addr, refusal, { tag });
    if (ruleFor(policy, { name: addr.name, tag })?.tags === 'pin') return this.#pinnedTag(addr, tag, accept);
    return this.#followTag(addr, tag, accept);
  }

  /** `tags: follow`: the tag is resolved upstream again (every tagTtlSeconds) and a new digest is verified. */
  async #followTag(addr: Address, tag: string, accept: string | undefined): Promise<ServedManifest> {
    const { metadata, tagTtlSeconds, now } = this.deps;
    const known = await metadata.tag(addr.name, tag);
    if (known && now() - known.resolvedAt < tagTtlSeconds * 1000) {
      const cached = await this.#cached(addr, known.digest, 'tag', tag);
      if (cached && acceptable(cached.mediaType, accept)) return cached;
    }
    const progress = { tagAnswered: false };
    try {
      return await this.#resolveTag(addr, tag, accept, progress);
    } catch (err) {
      const unreachable =
        err instanceof UpstreamError && (err.code === 'UPSTREAM_UNAVAILABLE' || err.code === 'UPSTREAM_TIMEOUT');
      // Only when the tag itself could not be asked for: an upstream that answered it and
      // then failed to give a new digest's signatures does not keep the tag on its old one.
      if (!unreachable || progress.tagAnswered || addr.upstream.config.upstreamDown !== 'serve-verified' || !known)
        throw err;
      // The digest last verified for this tag, if it is admitted under the policy in
      // force now (decided again from stored bytes if need be; a withdrawn one is gone).
      const cached = await this.#cached(addr, known.digest, 'tag', tag).catch(() => undefined);
      if (!cached || !acceptable(cached.mediaType, accept)) throw err;
      this.deps.logger.warn(
        { event: 'tag.served_verified', repository: addr.name, tag, digest: cached.digest.text, why: err.message },
        'the upstream cannot be reached: the digest last verified for this tag is served',
      );
      return {
        ...cached,
        stale: `${addr.upstream.config.name} unreachable; ${tag} is served as last verified at ${new Date(known.resolvedAt).toISOString()}`,
      };
    }
  }

  async #resolveTag(
    addr: Address,
    tag: string,
    accept: string | undefined,
    progress: { tagAnswered: boolean },
  ): Promise<ServedManifest> {
    const { metadata, now } = this.deps;
    const upstreamAccept = accept ?? MANIFEST_MEDIA_TYPES.join(', ');
    const head = await addr.upstream.client.manifest(addr.repository, tag, 'HEAD', upstreamAccept, MAX_MANIFEST_BYTES);
    if (!head) throw new GatewayError('MANIFEST_UNKNOWN', `${addr.name}:${tag} is not known upstream`);
    const claimed = header(head.headers, 'docker-content-digest');
    if (claimed !== undefined) {
      // The upstream said where the tag points now: whatever fails after that is not an outage of the tag.
      progress.tagAnswered = true;
      // The claim only selects which verified content to serve: what we serve for a
      // digest was hashed and admitted by us, under the current policy.
      const cached = await this.#cached(addr, claimed, 'tag', tag);
      if (cached) {
        await metadata.setTag(addr.name, tag, cached.digest.text, now());
        return cached;
      }
    }
    const res = await addr.upstream.client.manifest(addr.repository, tag, 'GET', upstreamAccept, MAX_MANIFEST_BYTES);
    if (!res) throw new GatewayError('MANIFEST_UNKNOWN', `${addr.name}:${tag} is not known upstream`);
    progress.tagAnswered = true;
    const digest = digestOf(res.bytes);
    const served = await this.#admit(addr, digest, res.bytes, header(res.headers, 'content-type'), 'tag', tag);
    await metadata.setTag(addr.name, tag, digest.text, now());
    return served;
  }

  /**
   * `tags: pin`: the first digest verified for a tag is served until an operator
   * releases the pin (`portcullis tags release`); the upstream tag is still looked at
   * (at most every tagTtlSeconds) so that a move is logged, but it changes nothing.
   */
  async #pinnedTag(addr: Address, tag: string, accept: string | undefined): Promise<ServedManifest> {
    const { metadata, tagTtlSeconds, now, logger } = this.deps;
    const pin = await metadata.pin(addr.name, tag);
    if (!pin) {
      const served = await this.#followTag(addr, tag, accept);
      // A digest served only because the upstream is down is not pinned: the pin waits for a real answer.
      if (served.stale !== undefined) return served;
      await metadata.setPin(addr.name, tag, served.digest.text, now());
      logger.info(
        { event: 'tag.pinned', repository: addr.name, tag, digest: served.digest.text },
        'tag pinned to its first verified digest',
      );
      return served;
    }
    const known = await metadata.tag(addr.name, tag);
    if (!known || now() - known.resolvedAt >= tagTtlSeconds * 1000) {
      const head = await addr.upstream.client
        .manifest(addr.repository, tag, 'HEAD', accept ?? MANIFEST_MEDIA_TYPES.join(', '), MAX_MANIFEST_BYTES)
        .catch(() => undefined);
      const upstream = head ? header(head.headers, 'docker-content-digest') : undefined;
      if (upstream !== undefined && upstream !== pin.digest && upstream !== pin.upstreamDigest) {
        await metadata.notePinMove(addr.name, tag, upstream);
        logger.warn(
          { event: 'tag.moved', repository: addr.name, tag, pinned: pin.digest, upstream },
          'the upstream tag moved; the pinned digest is still served until the pin is released',
        );
      } else if (upstream === pin.digest && pin.upstreamDigest !== undefined) {
        await metadata.notePinMove(addr.name, tag, undefined);
        logger.info(
          { event: 'tag.moved_back', repository: addr.name, tag, pinned: pin.digest },
          'the upstream tag points at the pinned digest again',
        );
      }
      await metadata.setTag(addr.name, tag, pin.digest, now());
    }
    const cached = await this.#cached(addr, pin.digest, 'tag', tag);
    if (cached) return cached;
    const digest = parseDigest(pin.digest);
    const res = await addr.upstream.client.manifest(
      addr.repository,
      digest.text,
      'GET',
      accept ?? MANIFEST_MEDIA_TYPES.join(', '),
      MAX_MANIFEST_BYTES,
    );
    if (!res)
      throw new GatewayError(
        'MANIFEST_UNKNOWN',
        `${addr.name}:${tag} is pinned to ${pin.digest}, which the upstream no longer has`,
      );
    if (digestOf(res.bytes, digest.algorithm).hex !== digest.hex)
      throw new UpstreamError(
        'UPSTREAM_DIGEST_MISMATCH',
        `upstream sent a manifest hashing to another digest for ${digest.text}`,
      );
    return this.#admit(addr, digest, res.bytes, header(res.headers, 'content-type'), 'tag', tag);
  }

  async #byDigest(addr: Address, digest: Digest, accept: string | undefined): Promise<ServedManifest> {
    const cached = await this.#cached(addr, digest.text, 'digest');
    if (cached) return cached;
    const res = await this.#upstreamByDigest(addr, digest, accept ?? MANIFEST_MEDIA_TYPES.join(', '));
    if (!res) throw new GatewayError('MANIFEST_UNKNOWN', `${addr.name}@${digest.text} is not known upstream`);
    return this.#admit(addr, digest, res.bytes, res.contentType, 'digest');
  }

  /** The upstream's bytes for a digest, checked against it. */
  async #upstreamByDigest(
    addr: Address,
    digest: Digest,
    accept: string,
  ): Promise<{ bytes: Buffer; contentType: string | undefined } | undefined> {
    const res = await addr.upstream.client.manifest(addr.repository, digest.text, 'GET', accept, MAX_MANIFEST_BYTES);
    if (!res) return undefined;
    const actual = digestOf(res.bytes, digest.algorithm);
    if (actual.hex !== digest.hex) {
      throw new UpstreamError(
        'UPSTREAM_DIGEST_MISMATCH',
        `upstream sent a manifest hashing to ${actual.text} for ${digest.text}`,
      );
    }
    return { bytes: res.bytes, contentType: header(res.headers, 'content-type') };
  }

  /**
   * Bytes of a manifest admitted under the policy in force that this replica's own
   * store lacks (replicas sharing metadata but not blobs): fetched again by digest.
   * Bytes that hash to the admitted digest are the bytes that were decided.
   */
  async #refill(addr: Address, admitted: AdmittedManifest, digest: Digest): Promise<Buffer | undefined> {
    if (admitted.kind === 'attachment' || admitted.policyDigest !== this.deps.policy().digest.text) return undefined;
    // Concurrent requests share one fetch.
    return this.#refills.run(`${addr.name}@${digest.text}`, async () => {
      const res = await this.#upstreamByDigest(addr, digest, admitted.mediaType);
      if (!res) return undefined;
      await this.deps.store.putBytes(digest, res.bytes);
      return res.bytes;
    });
  }

  /**
   * Stored bytes for an admitted manifest, hashed again on the way out. Admitted under
   * another policy: an image or index is decided again from the stored bytes; an
   * attachment is fetched again (its subject must be admitted now).
   */
  async #cached(addr: Address, digestText: string, route: Route, tag?: string): Promise<ServedManifest | undefined> {
    const admitted = await this.deps.metadata.admittedManifest(addr.name, digestText);
    if (!admitted) return undefined;
    const digest = parseDigest(admitted.digest);
    const bytes =
      (await this.deps.store.readBytes(digest, MAX_MANIFEST_BYTES)) ?? (await this.#refill(addr, admitted, digest));
    if (!bytes) return undefined;
    if (digestOf(bytes, digest.algorithm).hex !== digest.hex) {
      this.deps.logger.error(
        { event: 'store.corrupt', digest: digest.text },
        'a stored manifest no longer matches its digest; removed',
      );
      await this.deps.store.delete(digest);
      return undefined;
    }
    const policy = this.deps.policy();
    if (admitted.kind === 'attachment') {
      // Never the answer to an ordinary tag (or a HEAD claim for one); by digest only
      // while the subject it was stored for is admitted.
      if (route === 'tag' || admitted.subject === undefined || !(await this.#isAdmitted(addr, admitted.subject))) {
        return undefined;
      }
    }
    if (admitted.policyDigest !== policy.digest.text) {
      if (admitted.kind === 'attachment') return undefined;
      return this.#admit(addr, digest, bytes, admitted.mediaType, route, tag);
    }
    if (admitted.kind !== 'attachment') {
      // A request another rule applies to (containers-policy.json scopes a reference
      // with its tag or digest) is decided under that rule.
      const subject = { name: addr.name, digest, tag: route === 'tag' ? tag : undefined };
      if (admitted.rule !== ruleNameFor(policy, subject))
        return this.#admit(addr, digest, bytes, admitted.mediaType, route, tag);
    }
    // Identity rules that compare the tag: a digest admitted under one tag (or by
    // digest) is decided again the first time it is asked for by another, or by digest.
    const asked = route === 'tag' ? tag : undefined;
    if (admitted.kind !== 'attachment' && comparesTag(policy, { name: addr.name, digest, tag: asked })) {
      if (!(await this.deps.metadata.admittedFor(addr.name, digest.text, policy.digest.text, asked)))
        return this.#admit(addr, digest, bytes, admitted.mediaType, route, asked);
    }
    this.deps.metrics.cache.inc({ kind: 'manifest', result: 'hit' });
    this.#touch(addr.name, digest.text);
    return { digest, mediaType: admitted.mediaType, bytes };
  }

  /** Retention by last pull: noted at most once a minute per manifest, off the request's path. */
  #touch(repository: string, digest: string): void {
    const key = `${repository}@${digest}`;
    const now = this.deps.now();
    if (now - (this.#touched.get(key) ?? 0) < 60_000) return;
    if (this.#touched.size > 100_000) this.#touched.clear();
    this.#touched.set(key, now);
    this.deps.metadata
      .touch(repository, digest, now)
      .catch((err: unknown) =>
        this.deps.logger.warn({ event: 'metadata.touch_failed', err }, 'the last-pull time was not recorded'),
      );
  }

  /** Verifies and, if allowed, stores. Concurrent requests for the same digest share the work. */
  #admit(
    addr: Address,
    digest: Digest,
    bytes: Buffer,
    contentType: string | undefined,
    route: Route,
    tag?: string,
  ): Promise<ServedManifest> {
    // One decision per digest and reference asked for: identity rules may compare the tag.
    return this.#flights.run(`${addr.name}@${digest.text}#${tag ?? ''}`, async () => {
      this.deps.metrics.cache.inc({ kind: 'manifest', result: 'miss' });
      const manifest = parseManifest(bytes, contentType);
      const subject = manifest.subject?.digest.text;
      // A referrer of an admitted subject, asked for by digest, is an attachment only
      // when it is one by its bytes and no index lists it (a platform manifest a
      // client can run is always decided).
      if (
        route === 'digest' &&
        subject !== undefined &&
        attachmentProblem(manifest, '.ref') === undefined &&
        (await this.#isAdmitted(addr, subject)) &&
        !(await this.deps.metadata.listedByIndex(addr.name, digest.text))
      ) {
        try {
          return await this.#storeAttachment(addr, digest, bytes, manifest, subject);
        } catch (err) {
          if (!(err instanceof OciError && err.code === 'MANIFEST_INVALID')) throw err;
          this.deps.logger.info(
            { event: 'attachment.refused', digest: digest.text, repository: addr.name, why: err.message },
            'a referrer that is not attachment content is decided as an image',
          );
        }
      }
      return this.#decideAndStore(addr, digest, bytes, manifest, tag);
    });
  }

  /**
   * Decides, stores on admission, and signs the attestation. An admission that rests
   * on no signature at all (`accept: anything`) gets no attestation: the gateway
   * vouches only for what it verified.
   */
  async #decideAndStore(
    addr: Address,
    digest: Digest,
    bytes: Buffer,
    manifest: Manifest,
    tag?: string,
  ): Promise<ServedManifest> {
    const compiled = this.deps.policy();
    const { decision, evidence } = await this.#decide(addr, digest, bytes, manifest, compiled, tag);
    if (!decision.allowed) throw new DeniedError(decision, `${addr.name}@${digest.text}`);
    // Attested only when the admission rests on verified signatures (not accept-anything, warn or audit).
    if (decision.attestable) {
      await this.deps.attestations.issue(addr, digest, inputsOf(addr, digest, decision, evidence), compiled);
    }
    return this.#store(
      addr,
      digest,
      bytes,
      manifest,
      manifest.kind,
      compiled.digest.text,
      decision.rule,
      decision.attestable,
    );
  }

  /**
   * Whether `subject` is an image or index admitted under the policy in force; one
   * admitted under another policy is decided again from its stored bytes first.
   */
  async admittedNow(addr: Address, subject: Digest): Promise<boolean> {
    if (await this.#isAdmitted(addr, subject.text)) return true;
    const known = await this.deps.metadata.admittedManifest(addr.name, subject.text);
    if (!known || known.kind === 'attachment') return false;
    try {
      await this.#cached(addr, subject.text, 'digest');
    } catch (err) {
      if (err instanceof DeniedError) return false;
      throw err;
    }
    return this.#isAdmitted(addr, subject.text);
  }

  async #isAdmitted(addr: Address, digestText: string): Promise<boolean> {
    const m = await this.deps.metadata.admittedManifest(addr.name, digestText);
    return m !== undefined && m.kind !== 'attachment' && m.policyDigest === this.deps.policy().digest.text;
  }

  async #decide(
    addr: Address,
    digest: Digest,
    bytes: Buffer,
    manifest: Manifest,
    compiled: CompiledPolicy,
    tag?: string,
  ): Promise<{ decision: Decision; evidence: Evidence }> {
    const { metadata, limits, metrics } = this.deps;
    const evidence = await gatherFormats(
      addr.upstream,
      addr.repository,
      digest,
      limits,
      formatsFor(compiled, { name: addr.name, digest, tag }),
      bytes,
    );
    // Only an index admitted with verified signatures, under the rule that applies to this manifest, covers it.
    const coveringIndex =
      manifest.kind === 'image'
        ? await metadata.coveringIndex(
            addr.name,
            digest.text,
            compiled.digest.text,
            ruleNameFor(compiled, { name: addr.name, digest, tag }),
          )
        : undefined;
    const decision = await evaluate(
      compiled,
      { name: addr.name, digest, tag, kind: manifest.kind },
      { ...evidence, coveringIndex },
      new Date(this.deps.now()),
    );
    await this.#record(
      addr,
      digest,
      decision.allowed,
      decision.rule,
      decision.policyDigest,
      decision.reasons,
      decision.denial,
      { mode: decision.mode, verdict: decision.verdict, tag },
    );
    metrics.decisions.inc({ result: decision.allowed ? 'allowed' : 'denied' });
    return { decision, evidence };
  }

  async #record(
    addr: Address,
    digest: Digest,
    allowed: boolean,
    rule: string,
    policyDigest: string,
    reasons: readonly { code: string; message: string }[],
    denial?: string,
    extra: { mode?: 'enforce' | 'warn' | 'audit'; verdict?: boolean; tag?: string | undefined } = {},
  ): Promise<void> {
    await this.deps.metadata.recordDecision({
      time: this.deps.now(),
      repository: addr.name,
      digest: digest.text,
      policyDigest,
      allowed,
      rule,
      reasons: reasons.map((r) => ({ code: r.code, message: r.message })),
      mode: extra.mode,
      verdict: extra.verdict,
      tag: extra.tag,
    });
    const line = {
      event: 'decision',
      digest: digest.text,
      repository: addr.name,
      ...(extra.tag ? { tag: extra.tag } : {}),
      policy: policyDigest,
      allowed,
      rule,
      reason: denial,
      reasons: reasons.map((r) => r.code),
      ...(extra.mode && extra.mode !== 'enforce' ? { mode: extra.mode, verdict: extra.verdict } : {}),
    };
    // warn mode: an admission that enforcing would deny is logged as a warning.
    if (extra.mode === 'warn' && extra.verdict === false)
      this.deps.logger.warn(line, 'admitted in warn mode; enforcing this rule would deny it');
    else
      this.deps.logger.info(
        line,
        allowed
          ? extra.verdict === false
            ? 'admitted in audit mode; enforcing this rule would deny it'
            : 'admitted'
          : 'denied',
      );
  }

  async #store(
    addr: Address,
    digest: Digest,
    bytes: Buffer,
    manifest: Manifest,
    kind: ManifestKind,
    policyDigest: string,
    rule: string,
    verified: boolean,
    subject?: string,
  ): Promise<ServedManifest> {
    await this.deps.store.putBytes(digest, bytes);
    await this.deps.metadata.admit(
      addr.name,
      {
        digest: digest.text,
        mediaType: manifest.mediaType,
        size: bytes.length,
        kind,
        policyDigest,
        rule,
        verified,
        ...(subject !== undefined ? { subject } : {}),
        blobs: referencedBlobs(manifest).map((d) => ({ digest: d.digest.text, size: d.size })),
        children: manifest.kind === 'index' && kind === 'index' ? manifest.manifests.map((d) => d.digest.text) : [],
      },
      this.deps.now(),
    );
    return { digest, mediaType: manifest.mediaType, bytes };
  }

  /** An attachment is recorded as a decision of its own: served because its subject is admitted. */
  async #storeAttachment(
    addr: Address,
    digest: Digest,
    bytes: Buffer,
    manifest: Manifest,
    subject: string,
  ): Promise<ServedManifest> {
    const policyDigest = this.deps.policy().digest.text;
    const known = await this.deps.metadata.admittedManifest(addr.name, digest.text);
    if (
      known?.kind === 'attachment' &&
      known.policyDigest === policyDigest &&
      known.subject === subject &&
      (await this.deps.store.stat(digest)) === bytes.length
    ) {
      return { digest, mediaType: manifest.mediaType, bytes };
    }
    // An attachment by its bytes too: its blobs are read, checked and stored now.
    if (manifest.kind === 'image') {
      const blobs = await checkAttachmentContent(manifest, attachmentSource(addr, this.deps.store));
      for (const b of blobs) await this.deps.store.putBytes(b.descriptor.digest, b.bytes);
    }
    await this.#record(addr, digest, true, 'attachment', policyDigest, [
      { code: 'attachment.subject_admitted', message: `a signature or attestation of admitted ${subject}` },
    ]);
    return this.#store(addr, digest, bytes, manifest, 'attachment', policyDigest, 'attachment', false, subject);
  }

  /** `sha256-<hex>.sig` and friends: served while their subject is admitted here. */
  async #attachmentByTag(
    addr: Address,
    tag: string,
    att: { digest: string; suffix: string },
    accept: string | undefined,
  ): Promise<ServedManifest> {
    const subject = parseDigest(att.digest);
    await this.#requireSubject(addr, subject);
    if (att.suffix === '.att') {
      // The publisher's attestations, unchanged, then the gateway's own. A broken or
      // unreachable upstream .att does not hide the gateway's attestation.
      const ours = await this.#ensureAttested(addr, subject);
      let upstream: { bytes: Buffer; manifest: Manifest } | undefined;
      try {
        upstream = await this.#upstreamAttachment(addr, tag, att.suffix, accept);
      } catch (err) {
        this.deps.logger.warn(
          { err, tag, repository: addr.name },
          "the upstream attestation tag is unusable; serving the gateway's alone",
        );
      }
      const publisher = upstream?.manifest.kind === 'image' ? upstream.manifest : undefined;
      if (!ours && !publisher) throw new GatewayError('MANIFEST_UNKNOWN', `${addr.name}:${tag}: no attestation`);
      const bytes = await this.deps.attestations.attTagManifest(ours, publisher);
      return this.#storeAttachment(addr, digestOf(bytes), bytes, parseManifest(bytes), att.digest);
    }
    const upstream = await this.#upstreamAttachment(addr, tag, att.suffix, accept);
    if (!upstream) throw new GatewayError('MANIFEST_UNKNOWN', `${addr.name}:${tag} is not known upstream`);
    return this.#storeAttachment(addr, digestOf(upstream.bytes), upstream.bytes, upstream.manifest, att.digest);
  }

  /**
   * The subject of an attachment must be an image or index admitted under the current
   * policy. cosign verify by digest asks for the .sig tag first, so it is admitted
   * now when it can be (a denial ends the request here).
   */
  async #requireSubject(addr: Address, subject: Digest): Promise<void> {
    if (await this.#isAdmitted(addr, subject.text)) return;
    await this.#byDigest(addr, subject, undefined);
    if (!(await this.#isAdmitted(addr, subject.text))) {
      throw new GatewayError('MANIFEST_UNKNOWN', `${subject.text} is not an admitted image in ${addr.name}`);
    }
  }

  /**
   * The gateway's attestation of an admitted subject under the current policy and key
   * set. When none is stored (admitted before, under other keys, or its blob is gone),
   * or the stored one is older than renewAfterSeconds, the subject is decided again
   * (its signatures gathered from upstream again) rather than signed blindly. Denied
   * now: the admission is withdrawn. Upstream unreachable during a renewal: the
   * stored attestation stands (it ages out at the clients' --max-age).
   */
  async #ensureAttested(addr: Address, subject: Digest): Promise<StoredEnvelope | undefined> {
    const { attestations, policy, metadata, store, now, renewAfterSeconds, logger } = this.deps;
    // One policy for the whole renewal, even if a reload lands meanwhile.
    const compiled = policy();
    const found = await attestations.find(addr, subject, compiled.digest.text);
    if (found && now() - found.createdAt < renewAfterSeconds * 1000) return found;
    const admitted = await metadata.admittedManifest(addr.name, subject.text);
    const bytes = admitted ? await store.readBytes(subject, MAX_MANIFEST_BYTES) : undefined;
    if (!admitted || !bytes || digestOf(bytes, subject.algorithm).hex !== subject.hex) return found;
    // Admitted under this policy without verified signatures (accept anything, warn, audit): nothing to attest.
    if (admitted.policyDigest === compiled.digest.text && admitted.verified === false && admitted.rule !== '')
      return undefined;
    const manifest = parseManifest(bytes, admitted.mediaType);
    const key = `${addr.name}@${subject.text}`;
    // An upstream that failed a renewal is asked again at most once a minute; the stored attestation stands meanwhile.
    const failedAt = this.#renewalFailedAt.get(key);
    if (found && failedAt !== undefined && now() - failedAt < RENEWAL_RETRY_MS) return found;
    // Decided again in the context it was admitted in: the tag of its last admission (identity rules compare it).
    const last = (await metadata.decisions({ digest: subject.text, repository: addr.name, limit: 20 })).find(
      (d) => d.allowed && d.policyDigest === compiled.digest.text,
    );
    const tag = last?.tag ?? undefined;
    // A platform manifest admitted through its signed index: the index is renewed (or withdrawn) first.
    if (manifest.kind === 'image') {
      const index = await metadata.coveringIndex(
        addr.name,
        subject.text,
        compiled.digest.text,
        ruleNameFor(compiled, { name: addr.name, digest: subject, tag }),
      );
      if (index !== undefined && index !== subject.text)
        await this.#ensureAttested(addr, parseDigest(index)).catch((err: unknown) => {
          if (!(err instanceof DeniedError)) throw err;
        });
    }
    try {
      await this.#flights.run(key, () => this.#decideAndStore(addr, subject, bytes, manifest, tag));
      this.#renewalFailedAt.delete(key);
    } catch (err) {
      if (err instanceof DeniedError) {
        await metadata.withdraw(addr.name, subject.text);
        logger.warn(
          { event: 'admission.withdrawn', repository: addr.name, digest: subject.text, reason: err.decision.denial },
          'an admitted image failed its renewal: its admission and attestations are withdrawn',
        );
        throw err;
      }
      if (!found) throw err;
      if (this.#renewalFailedAt.size > 10_000) this.#renewalFailedAt.clear();
      this.#renewalFailedAt.set(key, now());
      logger.warn(
        {
          event: 'attestation.renewal_failed',
          repository: addr.name,
          digest: subject.text,
          code: (err as { code?: string }).code,
          detail: (err as Error).message,
        },
        'the attestation could not be renewed now; the stored one is served',
      );
      return found;
    }
    return (await attestations.find(addr, subject, compiled.digest.text)) ?? found;
  }

  /**
   * The gateway's own attestation envelope of `digest`, for secure-run's check on
   * every run: one request, renewed here when due; a revoked or now-denied digest is
   * refused with its reason. The subject is admitted first when it can be.
   */
  async gatewayAttestation(addr: Address, digest: Digest): Promise<Buffer> {
    this.refuseByName(addr, { digest });
    await this.#requireSubject(addr, digest);
    const envelope = await this.#ensureAttested(addr, digest);
    const bytes = envelope ? await this.deps.attestations.read(envelope) : undefined;
    if (!bytes)
      throw new GatewayError(
        'MANIFEST_UNKNOWN',
        `${addr.name}@${digest.text} is admitted without verified signatures: the gateway attests nothing for it`,
      );
    return bytes;
  }

  async #upstreamAttachment(
    addr: Address,
    tag: string,
    suffix: string,
    accept: string | undefined,
  ): Promise<{ bytes: Buffer; manifest: Manifest } | undefined> {
    const res = await addr.upstream.client.manifest(
      addr.repository,
      tag,
      'GET',
      accept ?? MANIFEST_MEDIA_TYPES.join(', '),
      MAX_MANIFEST_BYTES,
    );
    if (!res) return undefined;
    const manifest = parseManifest(res.bytes, header(res.headers, 'content-type'));
    const problem = attachmentProblem(manifest, suffix);
    if (problem !== undefined)
      throw new OciError('MANIFEST_INVALID', `${tag} is not served as an attachment: ${problem}`);
    return { bytes: res.bytes, manifest };
  }

  /** The descriptor of the gateway's attestation of an admitted subject, for the referrers API; undefined when there is none. */
  async attestationReferrer(
    addr: Address,
    subject: Digest,
  ): Promise<
    | { mediaType: string; digest: string; size: number; artifactType: string; annotations: Record<string, string> }
    | undefined
  > {
    const admitted = await this.deps.metadata.admittedManifest(addr.name, subject.text);
    if (!admitted || !(await this.#isAdmitted(addr, subject.text))) return undefined;
    const envelope = await this.#ensureAttested(addr, subject);
    if (!envelope) return undefined;
    const bytes = await this.deps.attestations.referrerManifest(envelope, {
      mediaType: admitted.mediaType,
      digest: subject,
      size: admitted.size,
    });
    const manifest = parseManifest(bytes);
    const served = await this.#storeAttachment(addr, digestOf(bytes), bytes, manifest, subject.text);
    return {
      mediaType: served.mediaType,
      digest: served.digest.text,
      size: bytes.length,
      artifactType: manifest.artifactType ?? '',
      annotations: { ...(manifest.annotations ?? {}) },
    };
  }
}

/** The signatures a decision rested on, by the digest of their signed payload. */
function inputsOf(addr: Address, subject: Digest, decision: Decision, evidence: Evidence): ResourceRef[] {
  const verified = decision.reasons.filter((r) => r.code === 'signature.verified');
  const used = new Set(verified.map((r) => r.evidence));
  // Who made each signature: the key file, or a keyless signer's certificate subject and issuer.
  const signer = (source: string) => {
    const key = verified.find((r) => r.evidence === source)?.key;
    return key !== undefined ? { annotations: { 'dev.portcullis.signer': key } } : {};
  };
  const signatures: ResourceRef[] = evidence.cosign
    .filter((c) => used.has(c.source))
    .map((c) => ({
      uri: `docker://${addr.name}:${subject.algorithm}-${subject.hex}.sig`,
      digest: { sha256: digestOf(c.payload).hex },
      ...signer(c.source),
    }));
  for (const g of (evidence.gpg ?? []).filter((s) => used.has(s.source))) {
    signatures.push({
      uri: g.uri ?? `${addr.name}@${subject.text} ${g.source}`,
      digest: { sha256: digestOf(Buffer.from(g.blob)).hex },
      ...signer(g.source),
    });
  }
  // Bundles and Notation envelopes (`referrer sha256:… layer N`) and `.att` envelopes, with what they attest.
  const statements = [
    ...(evidence.bundles ?? []).map((b) => ({ source: b.source, bytes: b.bundle })),
    ...(evidence.attestations ?? []).map((a) => ({ source: a.source, bytes: a.envelope })),
    ...(evidence.notation ?? []).map((n) => ({ source: n.source, bytes: n.envelope })),
  ];
  for (const s of statements.filter((x) => used.has(x.source))) {
    const reason = verified.find((r) => r.evidence === s.source);
    const referrer = /^referrer (sha256:[0-9a-f]{64}) /.exec(s.source)?.[1];
    signatures.push({
      uri: referrer
        ? `docker://${addr.name}@${referrer}`
        : `docker://${addr.name}:${subject.algorithm}-${subject.hex}.att`,
      digest: { sha256: digestOf(Buffer.from(s.bytes)).hex },
      annotations: {
        ...(reason?.key !== undefined ? { 'dev.portcullis.signer': reason.key } : {}),
        ...(reason?.predicateType !== undefined ? { 'dev.portcullis.predicateType': reason.predicateType } : {}),
      },
    });
  }
  const index = decision.reasons.find((r) => r.code === 'signature.covered_by_index')
    ? evidence.coveringIndex
    : undefined;
  if (index !== undefined) {
    const d = parseDigest(index);
    signatures.push({ uri: `docker://${addr.name}@${index}`, digest: { [d.algorithm]: d.hex } });
  }
  return signatures;
}

/** Whether a client that sent `accept` can take `mediaType` (no Accept: anything). */
function acceptable(mediaType: string, accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  const types = accept.split(',').map((t) => (t.split(';')[0] ?? '').trim().toLowerCase());
  return types.includes(mediaType) || types.includes('*/*') || !types.some((t) => MANIFEST_MEDIA_TYPES.includes(t));
}
