/**
 * What the gateway knows about content beyond the bytes: which manifests were
 * admitted in which repository, which blobs they make available, where tags point,
 * and every admission decision. Invariant: a manifest is recorded only after a
 * policy decision allowed it, and its blob links are written in the same transaction.
 */
import { GatewayError } from '../errors.js';

export type ManifestKind = 'image' | 'index' | 'attachment';

export interface AdmittedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly kind: ManifestKind;
  /** The policy under which it was admitted; under another policy it must be decided again. */
  readonly policyDigest: string;
  /** The scope of the rule that admitted it (a request another rule applies to is decided again). */
  readonly rule?: string | undefined;
  /** Whether the admission rested on verified signatures (only such an index covers its children). */
  readonly verified?: boolean | undefined;
  /** For an attachment: the image or index it was stored for (served by digest only while that is admitted). */
  readonly subject?: string | undefined;
}

export interface Admission extends AdmittedManifest {
  readonly blobs: readonly { readonly digest: string; readonly size: number }[];
  readonly children: readonly string[];
}

export interface TagRecord {
  readonly digest: string;
  readonly resolvedAt: number;
}

export interface DecisionRecord {
  readonly time: number;
  readonly repository: string;
  readonly digest: string;
  readonly policyDigest: string;
  readonly allowed: boolean;
  readonly rule: string;
  readonly reasons: readonly { readonly code: string; readonly message: string }[];
  /** The rule's mode, and what enforcing it decides (warn/audit admit also when this is false). */
  readonly mode?: 'enforce' | 'warn' | 'audit' | undefined;
  readonly verdict?: boolean | undefined;
  /** The tag the client asked for, when it asked by tag. */
  readonly tag?: string | undefined;
}

/** A tag held at its first verified digest (a rule with `tags: pin`) until an operator releases it. */
export interface PinRecord {
  readonly tag: string;
  readonly digest: string;
  readonly pinnedAt: number;
  /** The digest the upstream tag was last seen to point at, when it moved away. */
  readonly upstreamDigest: string | undefined;
}

/** The gateway's signed verification summary for one admitted subject. */
export interface AttestationRecord {
  readonly subject: string;
  readonly envelope: string;
  readonly size: number;
  readonly policyDigest: string;
  /** The fingerprints of the keys that signed it, current first (see keySetOf). */
  readonly signingKeys: string;
  readonly createdAt: number;
}

/**
 * Leases on blob fills, for replicas that share a blob store: the holder of `fill`
 * fetches it from upstream; the others wait for it in the store. A lease lapses
 * `ttlMs` after it was last taken or renewed (a holder that died loses it), by the
 * shared database's clock.
 */
export interface FillLeases {
  /** True when `holder` now holds the lease: it was free, had lapsed, or was `holder`'s already. */
  acquire(fill: string, holder: string, ttlMs: number): Promise<boolean>;
  /** False when the lease was lost (it lapsed and another took it). */
  renew(fill: string, holder: string, ttlMs: number): Promise<boolean>;
  release(fill: string, holder: string): Promise<void>;
}

export interface ManifestPageRow {
  readonly repository: string;
  readonly digest: string;
  readonly kind: ManifestKind;
  readonly size: number;
  readonly admittedAt: number;
  readonly lastPulledAt: number;
  /** Whether an admitted index of the repository lists it (then it goes with that index, never alone). */
  readonly listedByIndex: boolean;
}

export interface MetadataStore {
  /** Present where several gateways share the store (PostgreSQL); SQLite serves one gateway. */
  readonly leases?: FillLeases;
  recordAttestation(repository: string, record: AttestationRecord): Promise<void>;
  /** The attestation of `subject` in `repository` issued under `policyDigest` by `signingKeys` (one per policy and key set). */
  attestation(
    repository: string,
    subject: string,
    policyDigest: string,
    signingKeys: string,
  ): Promise<AttestationRecord | undefined>;
  /**
   * Takes back the admission of `digest` in `repository` (a renewal found it denied):
   * its manifest, blob links, index children and attestations are forgotten, so the
   * next request decides it afresh. Stored bytes are left to the store's own cleanup.
   */
  withdraw(repository: string, digest: string): Promise<void>;
  /** The time of the first allowed decision for `digest` in `repository` (kept across re-decisions and withdrawals). */
  firstAdmitted(repository: string, digest: string): Promise<number | undefined>;
  admittedManifest(repository: string, digest: string): Promise<AdmittedManifest | undefined>;
  admit(repository: string, admission: Admission, now: number): Promise<void>;
  /**
   * The size of a blob that a manifest of `repository` admitted under `policyDigest`
   * references, or undefined; `attachmentOnly` when only attachments reference it (their
   * blobs are served from the store alone: they were checked when the attachment was).
   */
  admittedBlob(
    repository: string,
    digest: string,
    policyDigest: string,
  ): Promise<{ size: number; attachmentOnly: boolean } | undefined>;
  /** Whether any index recorded in `repository` lists `digest` (such a manifest is decided, never an attachment). */
  listedByIndex(repository: string, digest: string): Promise<boolean>;
  /** An index admitted with verified signatures under this policy and rule that lists `digest`. */
  coveringIndex(repository: string, digest: string, policyDigest: string, rule: string): Promise<string | undefined>;
  tag(repository: string, tag: string): Promise<TagRecord | undefined>;
  setTag(repository: string, tag: string, digest: string, now: number): Promise<void>;
  recordDecision(record: DecisionRecord): Promise<void>;
  /** Whether this digest was admitted under this policy for this tag (undefined: asked for by digest). */
  admittedFor(repository: string, digest: string, policyDigest: string, tag: string | undefined): Promise<boolean>;
  pin(repository: string, tag: string): Promise<PinRecord | undefined>;
  setPin(repository: string, tag: string, digest: string, now: number): Promise<void>;
  /** Remembers where the upstream tag points now, when that is not the pinned digest (undefined: back at it). */
  notePinMove(repository: string, tag: string, upstreamDigest: string | undefined): Promise<void>;
  /** Releases a pin; true when there was one. */
  releasePin(repository: string, tag: string): Promise<boolean>;
  pins(repository?: string): Promise<(PinRecord & { repository: string })[]>;
  /** Newest first; every filter given must match (`tag`: the tag the client asked for). */
  decisions(filter: { digest?: string; repository?: string; tag?: string; limit: number }): Promise<DecisionRecord[]>;
  /**
   * Admitted manifests in (repository, digest) byte order, `limit` at a time, after
   * `after` (for fsck and GC walking the whole store). Each page costs O(limit · log n)
   * (see pageByRepository), so a walk of the whole store is O(n log n).
   */
  manifestPage(after: { repository: string; digest: string } | undefined, limit: number): Promise<ManifestPageRow[]>;
  /** Throws unless the database answers (readiness). */
  ping(): Promise<void>;
  /** Notes that `digest` in `repository` was served now (retention by last pull). */
  touch(repository: string, digest: string, now: number): Promise<void>;
  /**
   * What the admission of `digest` in `repository` holds in the store: the manifest, the
   * blobs it references and, for an index, its platform manifests and their blobs (each once).
   */
  storedBytes(repository: string, digest: string): Promise<{ digest: string; size: number }[]>;
  /** Whether any admitted manifest (any repository) references `digest`, is it, or an attestation is stored as it. */
  blobReferenced(digest: string): Promise<boolean>;
  /** Those of `digests` (at most 1000) that nothing references, as blobReferenced asks of one (GC asks in batches). */
  unreferenced(digests: readonly string[]): Promise<string[]>;
  /** Runs `f` unless another replica holds the GC lock (then undefined at once); one gateway's store needs none. */
  exclusively?<T>(f: () => Promise<T>): Promise<T | undefined>;
  close(): Promise<void>;
}

/** An attachment whose subject is no longer admitted (withdrawn meanwhile): never recorded. */
export function subjectGone(repository: string, subject: string): GatewayError {
  return new GatewayError('MANIFEST_UNKNOWN', `${repository}@${subject} is no longer admitted`);
}

/**
 * A manifestPage made of per-repository steps, each an index range scan: the rest of
 * `after`'s repository, then the next repositories by name (byte order) from the start.
 * One ordered query over the join of both tables would sort the whole table for every
 * page on a database whose index order is not byte order (PostgreSQL under a locale).
 */
export async function pageByRepository(
  after: { repository: string; digest: string } | undefined,
  limit: number,
  repositoriesAfter: (name: string | undefined, limit: number) => Promise<string[]>,
  manifestsOf: (repository: string, afterDigest: string | undefined, limit: number) => Promise<ManifestPageRow[]>,
): Promise<ManifestPageRow[]> {
  const out: ManifestPageRow[] = [];
  if (after) out.push(...(await manifestsOf(after.repository, after.digest, limit)));
  let name = after?.repository;
  while (out.length < limit) {
    const names = await repositoriesAfter(name, REPOSITORY_STEP);
    if (names.length === 0) break;
    for (const n of names) {
      name = n;
      out.push(...(await manifestsOf(n, undefined, limit - out.length)));
      if (out.length >= limit) break;
    }
  }
  return out;
}

/** How many repository names a page asks for at a time (repositories without manifests cost one query each). */
const REPOSITORY_STEP = 64;
