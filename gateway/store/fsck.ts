import { createHash } from 'node:crypto';
import { parseDigest } from '../../oci/digest.js';
import type { MetadataStore } from '../metadata/metadata-store.js';
import type { BlobStore } from './blob-store.js';

/**
 * `portcullis fsck`: every stored blob is read whole and hashed against the digest it
 * is stored under, and every admission is checked against the store. With `repair`,
 * a blob that does not hash to its digest is deleted (one that cannot be read is only
 * reported) — the gateway
 * never serves it, and fetches and verifies it again when it is next asked for — and
 * an attachment the store lacks is withdrawn (it is made or fetched again). Images and
 * indexes the store lacks are only counted: the gateway fetches their bytes again by
 * digest. It runs beside a live gateway: nothing it deletes was servable.
 */
export type FsckFindingKind = 'blob.corrupt' | 'blob.unreadable' | 'attachment.missing';

export interface FsckFinding {
  readonly kind: FsckFindingKind;
  readonly digest: string;
  readonly repository?: string;
  readonly detail: string;
  readonly repaired: boolean;
}

export interface FsckReport {
  readonly blobs: number;
  readonly bytes: number;
  readonly manifests: number;
  /** Admitted images and indexes whose bytes are not stored (fetched again on their next pull). */
  readonly manifestsNotStored: number;
  readonly findings: readonly FsckFinding[];
}

const PAGE = 500;

export async function fsck(
  store: BlobStore,
  metadata: MetadataStore,
  opts: {
    repair: boolean;
    onFinding?: (f: FsckFinding) => void;
    /** False where the metadata is shared but this store is not: other replicas hold those bytes. */
    storeIsShared?: boolean;
  },
): Promise<FsckReport> {
  const findings: FsckFinding[] = [];
  const note = (f: FsckFinding) => {
    findings.push(f);
    opts.onFinding?.(f);
  };
  let blobs = 0;
  let bytes = 0;
  for await (const d of store.list()) {
    blobs++;
    let problem: { kind: FsckFindingKind; detail: string } | undefined;
    try {
      const h = createHash(d.algorithm);
      let n = 0;
      for await (const chunk of await store.read(d)) {
        h.update(chunk as Buffer);
        n += (chunk as Buffer).length;
      }
      bytes += n;
      const actual = h.digest('hex');
      if (actual !== d.hex) problem = { kind: 'blob.corrupt', detail: `${n} bytes hash to ${d.algorithm}:${actual}` };
    } catch (err) {
      problem = { kind: 'blob.unreadable', detail: (err as Error).message };
    }
    if (!problem) continue;
    // Unreadable may be passing (an object store that timed out): reported, never deleted.
    const repaired = opts.repair && problem.kind === 'blob.corrupt';
    if (repaired) await store.delete(d);
    note({ ...problem, digest: d.text, repaired });
  }
  let manifests = 0;
  let manifestsNotStored = 0;
  let after: { repository: string; digest: string } | undefined;
  for (;;) {
    const page = await metadata.manifestPage(after, PAGE);
    if (page.length === 0) break;
    for (const m of page) {
      manifests++;
      let digest;
      try {
        digest = parseDigest(m.digest);
      } catch {
        continue;
      }
      if ((await store.stat(digest)) !== undefined) continue;
      if (m.kind !== 'attachment') {
        manifestsNotStored++;
        continue;
      }
      const repaired = opts.repair && opts.storeIsShared !== false;
      if (repaired) await metadata.withdraw(m.repository, m.digest);
      note({
        kind: 'attachment.missing',
        digest: m.digest,
        repository: m.repository,
        detail: 'an admitted attachment whose bytes are not stored',
        repaired,
      });
    }
    const last = page[page.length - 1] as { repository: string; digest: string };
    after = { repository: last.repository, digest: last.digest };
  }
  return { blobs, bytes, manifests, manifestsNotStored, findings };
}
