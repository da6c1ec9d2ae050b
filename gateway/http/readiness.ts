import { digestOf } from '../../oci/digest.js';
import type { MetadataStore } from '../metadata/metadata-store.js';
import type { BlobStore } from '../store/blob-store.js';
import type { Upstream } from '../upstreams.js';

/**
 * `/readyz`: whether this gateway can serve. The database and the blob store must
 * answer (else 503); each upstream's base endpoint is probed too and reported, but an
 * upstream that is down does not make the gateway unready — what it has cached is
 * still served, and every replica would fail together. Upstream probes are reused for
 * `upstreamTtlMs`, so probes of many replicas never hammer a registry. `/healthz`
 * stays a liveness check that touches nothing.
 */
export interface CheckResult {
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly checks: {
    readonly database: CheckResult;
    readonly storage: CheckResult;
    readonly upstreams: Record<string, CheckResult>;
  };
}

const PROBE = digestOf(Buffer.alloc(0));

export function readinessCheck(
  deps: { metadata: MetadataStore; store: BlobStore; upstreams: readonly Upstream[] },
  opts: { timeoutMs?: number; upstreamTtlMs?: number } = {},
): () => Promise<Readiness> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const ttl = opts.upstreamTtlMs ?? 10_000;
  let upstreams: { at: number; result: Promise<Record<string, CheckResult>> } | undefined;
  const probeUpstreams = async (): Promise<Record<string, CheckResult>> => {
    const entries = await Promise.all(
      deps.upstreams.map(
        async (u) =>
          [
            u.config.name,
            await timed(() => u.client.ping({ signal: AbortSignal.timeout(timeoutMs) }), timeoutMs),
          ] as const,
      ),
    );
    return Object.fromEntries(entries);
  };
  // Probes of the database and the store are shared by concurrent callers and reused for a second:
  // a flood of /readyz costs them at most one query and one HEAD a second.
  let local: { at: number; result: Promise<[CheckResult, CheckResult]> } | undefined;
  return async () => {
    const now = Date.now();
    if (!upstreams || now - upstreams.at > ttl) upstreams = { at: now, result: probeUpstreams() };
    if (!local || now - local.at > 1000)
      local = {
        at: now,
        result: Promise.all([
          timed(() => deps.metadata.ping(), timeoutMs),
          timed(() => deps.store.stat(PROBE), timeoutMs),
        ]),
      };
    const [[database, storage], ups] = await Promise.all([local.result, upstreams.result]);
    return { ready: database.ok && storage.ok, checks: { database, storage, upstreams: ups } };
  };
}

async function timed(f: () => Promise<unknown>, timeoutMs: number): Promise<CheckResult> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      f(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: true, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    // A code only (this endpoint answers anyone): no addresses, bucket names or stacks; the log has the rest.
    const e = err as Error & { code?: unknown };
    const code = typeof e.code === 'string' && /^[A-Z0-9_.]{1,40}$/i.test(e.code) ? e.code : e.name;
    return { ok: false, ms: Math.round(performance.now() - t0), error: code.slice(0, 40) };
  } finally {
    clearTimeout(timer);
  }
}
