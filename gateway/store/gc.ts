import type { ManifestPageRow, MetadataStore } from '../metadata/metadata-store.js';
import type { Digest } from '../../oci/digest.js';
import type { BlobStore } from './blob-store.js';

/**
 * Retention and garbage collection (`portcullis gc`). First the admissions that a rule
 * retires — not pulled for `unpulledDays`, or admitted longer ago than `maxAgeDays`,
 * under the most specific rule whose scope names the repository, then, where the rule
 * has a `maxBytes` budget and what it keeps holds more, the least recently pulled until
 * the rest fits — are withdrawn (with
 * their platform manifests and attachments, as a failed renewal withdraws). Pinned
 * digests are never retired, and a platform manifest only with its index (a platform
 * that another, kept index also lists is withdrawn with the first and decided again
 * when next pulled through the second). Then every
 * stored blob that no admission of any repository uses any more (not a layer or config
 * of one, not a manifest, not an attestation envelope) is deleted, unless it was written
 * within the grace period: a fill in flight or a manifest stored a moment before its
 * admission is recorded is never taken. A blob still referenced is never deleted (the
 * check is made for each blob just before it goes). Online: pulls go on; what is
 * withdrawn is decided and fetched afresh when next asked for. `dryRun` withdraws and
 * deletes nothing: it lists the admissions a run would retire and the blobs unused now
 * (the layers only those admissions use are found by the run that retires them).
 */
export interface RetentionRule {
  /** A registry/repository prefix at a path-component boundary; undefined: every repository. */
  readonly scope?: string | undefined;
  readonly unpulledDays?: number | undefined;
  readonly maxAgeDays?: number | undefined;
  /** A size budget: beyond it, the admissions pulled least recently are retired until the scope fits. */
  readonly maxBytes?: number | undefined;
}

export interface GcOptions {
  readonly rules: readonly RetentionRule[];
  readonly graceMs: number;
  readonly now: number;
  readonly dryRun: boolean;
}

export interface GcReport {
  readonly dryRun: boolean;
  readonly manifestsChecked: number;
  readonly retired: readonly { repository: string; digest: string; why: string }[];
  readonly blobsChecked: number;
  readonly deleted: readonly { digest: string; size: number }[];
  readonly bytesFreed: number;
  /** Unused blobs left because they are younger than the grace period. */
  readonly inGrace: number;
  /**
   * Each scope with a size budget: the bytes its admissions hold before and after
   * (a blob counted once per scope, in every scope that uses it), and whether pinned
   * digests alone keep it over.
   */
  readonly budgets: readonly { scope: string; maxBytes: number; before: number; after: number; overByPins: boolean }[];
}

const DAY = 24 * 60 * 60 * 1000;
const PAGE = 500;
const SWEEP_BATCH = 500;

/** The most specific rule for `repository` (longest scope), or undefined. */
export function ruleFor(rules: readonly RetentionRule[], repository: string): RetentionRule | undefined {
  let best: RetentionRule | undefined;
  for (const r of rules) {
    const s = r.scope;
    if (s !== undefined && repository !== s && !repository.startsWith(`${s}/`)) continue;
    if (!best || (s?.length ?? -1) > (best.scope?.length ?? -1)) best = r;
  }
  return best;
}

function retiredBecause(rule: RetentionRule | undefined, m: ManifestPageRow, now: number): string | undefined {
  if (!rule || m.kind === 'attachment') return undefined; // attachments go with their subject
  // An admission counts as a pull (a row written by an older version may lack the pull time).
  const lastPull = Math.max(m.lastPulledAt, m.admittedAt);
  if (rule.unpulledDays !== undefined && now - lastPull > rule.unpulledDays * DAY)
    return `not pulled for ${rule.unpulledDays} days`;
  if (rule.maxAgeDays !== undefined && now - m.admittedAt > rule.maxAgeDays * DAY)
    return `admitted more than ${rule.maxAgeDays} days ago`;
  return undefined;
}

type Kept = { repository: string; digest: string; lastPull: number; pinned: boolean };

export async function collectGarbage(store: BlobStore, metadata: MetadataStore, o: GcOptions): Promise<GcReport> {
  const retired: { repository: string; digest: string; why: string }[] = [];
  // A pinned digest is served for its tag until released: never retired.
  const pinned = new Set((await metadata.pins()).map((p) => `${p.repository}@${p.digest}`));
  // What each budgeted rule keeps after the age rules, to be weighed against its budget.
  const kept = new Map<RetentionRule, Kept[]>();
  let manifestsChecked = 0;
  let after: { repository: string; digest: string } | undefined;
  for (;;) {
    const page = await metadata.manifestPage(after, PAGE);
    if (page.length === 0) break;
    for (const m of page) {
      manifestsChecked++;
      if (m.kind === 'attachment') continue; // attachments go with their subject
      const rule = ruleFor(o.rules, m.repository);
      const why = retiredBecause(rule, m, o.now);
      if (!rule || (!why && rule.maxBytes === undefined)) continue;
      // A platform manifest goes with the index that lists it, never on its own (nor counts apart from it).
      if (m.kind === 'image' && m.listedByIndex) continue;
      const isPinned = pinned.has(`${m.repository}@${m.digest}`);
      if (why && !isPinned) retired.push({ repository: m.repository, digest: m.digest, why });
      else if (rule.maxBytes !== undefined) {
        const list = kept.get(rule) ?? [];
        list.push({
          repository: m.repository,
          digest: m.digest,
          lastPull: Math.max(m.lastPulledAt, m.admittedAt),
          pinned: isPinned,
        });
        kept.set(rule, list);
      }
    }
    const last = page[page.length - 1] as ManifestPageRow;
    after = { repository: last.repository, digest: last.digest };
  }
  const budgets: GcReport['budgets'][number][] = [];
  for (const [rule, list] of kept) {
    const b = await overBudget(metadata, rule, list);
    budgets.push(b.report);
    retired.push(...b.retire);
  }
  if (!o.dryRun) for (const r of retired) await metadata.withdraw(r.repository, r.digest);

  const deleted: { digest: string; size: number }[] = [];
  let blobsChecked = 0;
  let inGrace = 0;
  // Asked of the metadata in batches (one query for many blobs, not one each).
  const sweep = async (batch: Digest[]) => {
    const unused = new Set(await metadata.unreferenced(batch.map((d) => d.text)));
    for (const d of batch) {
      if (!unused.has(d.text)) continue;
      const modified = await store.modifiedAt(d);
      if (modified === undefined) continue; // gone meanwhile
      if (o.now - modified < o.graceMs) {
        inGrace++;
        continue;
      }
      const size = (await store.stat(d)) ?? 0;
      if (!o.dryRun) {
        // Asked again just before it goes: an admission made meanwhile keeps it.
        if (await metadata.blobReferenced(d.text)) continue;
        await store.delete(d);
      }
      deleted.push({ digest: d.text, size });
    }
  };
  let batch: Digest[] = [];
  for await (const d of store.list()) {
    blobsChecked++;
    // (A dry run withdraws nothing, so what only the admissions it would retire use still counts as used.)
    batch.push(d);
    if (batch.length >= SWEEP_BATCH) {
      await sweep(batch);
      batch = [];
    }
  }
  await sweep(batch);
  return {
    dryRun: o.dryRun,
    manifestsChecked,
    retired,
    blobsChecked,
    deleted,
    bytesFreed: deleted.reduce((n, b) => n + b.size, 0),
    inGrace,
    budgets,
  };
}

/**
 * The admissions to retire for `rule`'s size budget: least recently pulled first (pins
 * never), until what the rest hold fits. A blob several admissions of the scope use
 * counts once, and its bytes are freed only when the last of them goes.
 */
async function overBudget(
  metadata: MetadataStore,
  rule: RetentionRule,
  list: Kept[],
): Promise<{ report: GcReport['budgets'][number]; retire: { repository: string; digest: string; why: string }[] }> {
  const maxBytes = rule.maxBytes as number;
  const uses = new Map<string, { size: number; count: number }>();
  const holds = new Map<Kept, string[]>();
  let total = 0;
  for (const k of list) {
    const blobs = await metadata.storedBytes(k.repository, k.digest);
    holds.set(
      k,
      blobs.map((b) => b.digest),
    );
    for (const b of blobs) {
      const u = uses.get(b.digest);
      if (u) u.count++;
      else {
        uses.set(b.digest, { size: b.size, count: 1 });
        total += b.size;
      }
    }
  }
  const before = total;
  const retire: { repository: string; digest: string; why: string }[] = [];
  const order = list.filter((k) => !k.pinned).sort((a, b) => a.lastPull - b.lastPull);
  const scope = rule.scope ?? '*';
  for (const k of order) {
    if (total <= maxBytes) break;
    retire.push({ repository: k.repository, digest: k.digest, why: `over the ${maxBytes}-byte budget of ${scope}` });
    for (const d of holds.get(k) ?? []) {
      const u = uses.get(d) as { size: number; count: number };
      if (--u.count === 0) total -= u.size;
    }
  }
  return { report: { scope, maxBytes, before, after: total, overByPins: total > maxBytes }, retire };
}
