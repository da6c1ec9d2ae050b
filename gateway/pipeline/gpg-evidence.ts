import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../oci/digest.js';
import { readBounded } from '../../oci/registry-client/body.js';
import { header } from '../../oci/registry-client/client.js';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { GpgSignatureEvidence } from '../../policies/model.js';
import type { Upstream } from '../upstreams.js';
import type { EvidenceLimits } from './evidence.js';

/**
 * Gathers GPG simple-signing signatures for one digest the way containers/image
 * does (FORMATS §3.3): when the upstream's `/v2/` answers with
 * `X-Registry-Supports-Signatures: 1`, from its signature API
 * (`/extensions/v2/<repo>/signatures/<digest>`); otherwise from the upstream's
 * configured lookaside (`<base>/<repo>@sha256=<hex>/signature-1`, `-2`, … until the
 * first 404). Bounded: at most `maxSignatures` signatures of `maxSignatureBytes`
 * each, every request with the upstream's time limits, and the whole gathering
 * within the upstream's total time limit; redirects are not followed. What goes
 * wrong is a problem for the evaluator, never a silent skip.
 */
export interface GpgEvidence {
  readonly gpg: GpgSignatureEvidence[];
  readonly problems: { source: string; message: string }[];
}

const EXTENSION_HEADER = 'x-registry-supports-signatures';
// Keyed by the upstream's configuration: the same for every request's view of it.
const supportsExtension = new WeakMap<Upstream['config'], Promise<boolean>>();

export async function gatherGpgEvidence(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
): Promise<GpgEvidence> {
  const out: GpgEvidence = { gpg: [], problems: [] };
  let extension = supportsExtension.get(upstream.config);
  if (!extension) {
    // A failed probe is not remembered: the next decision asks again.
    extension = upstream.client.ping().then(
      (h) => header(h, EXTENSION_HEADER) === '1',
      () => {
        supportsExtension.delete(upstream.config);
        return false;
      },
    );
    supportsExtension.set(upstream.config, extension);
  }
  const limit = AbortSignal.timeout(upstream.config.timeouts.totalMs);
  const deadline = upstream.signal ? AbortSignal.any([limit, upstream.signal]) : limit;
  try {
    if (await extension) await fromExtension(upstream, repository, digest, limits, out);
    else {
      // The upstream's own lookaside, or the one a registries.d gives its repository.
      const lookaside = upstream.config.lookaside ?? upstream.lookasideFor?.(`${upstream.config.name}/${repository}`);
      if (lookaside !== undefined) await fromLookaside(lookaside, upstream, repository, digest, limits, out, deadline);
    }
  } catch (err) {
    out.problems.push({
      source: 'GPG signatures',
      message: `could not fetch GPG signatures: ${(err as Error).message}`,
    });
  }
  return out;
}

async function fromExtension(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
  out: GpgEvidence,
): Promise<void> {
  const source = 'signature API';
  // Base64 grows a blob by a third; the JSON around each is small.
  const maxBytes = limits.maxSignatures * (Math.ceil(limits.maxSignatureBytes / 3) * 4 + 512) + 1024;
  const res = await upstream.client.small(
    repository,
    `/extensions/v2/${repository}/signatures/${digest.text}`,
    'application/json',
    maxBytes,
  );
  if (res.status === 404) return;
  if (res.status !== 200) {
    out.problems.push({ source, message: `the registry's signature API answered ${res.status}` });
    return;
  }
  let doc: unknown;
  try {
    doc = parseStrictJson(res.bytes, { maxDepth: 8 });
  } catch (err) {
    out.problems.push({ source, message: `unreadable answer: ${(err as Error).message}` });
    return;
  }
  const list = isObject(doc) && Array.isArray(doc.signatures) ? doc.signatures : undefined;
  if (!list) {
    out.problems.push({ source, message: 'the answer has no "signatures" list' });
    return;
  }
  const usable = list.filter((s) => isObject(s) && s.schemaVersion === 2 && s.type === 'atomic');
  if (usable.length > limits.maxSignatures)
    out.problems.push({
      source,
      message: `${usable.length} signatures; only the first ${limits.maxSignatures} were considered`,
    });
  for (const [i, s] of usable.slice(0, limits.maxSignatures).entries()) {
    const where = `${source} signature ${i + 1}`;
    const content = isObject(s) ? s.content : undefined;
    if (typeof content !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(content) || content.length % 4 !== 0) {
      out.problems.push({ source: where, message: 'content is not base64' });
      continue;
    }
    const blob = Buffer.from(content, 'base64');
    if (blob.length > limits.maxSignatureBytes)
      out.problems.push({
        source: where,
        message: `signature of ${blob.length} bytes exceeds ${limits.maxSignatureBytes}`,
      });
    else
      out.gpg.push({
        source: where,
        blob,
        uri: `${upstream.config.url}/extensions/v2/${repository}/signatures/${digest.text}#${i + 1}`,
      });
  }
}

async function fromLookaside(
  base: string,
  upstream: Upstream,
  repository: string,
  digest: Digest,
  limits: EvidenceLimits,
  out: GpgEvidence,
  deadline: AbortSignal,
): Promise<void> {
  const dir = `${repository}@${digest.algorithm}=${digest.hex}`;
  for (let n = 1; ; n++) {
    const source = `lookaside signature-${n}`;
    if (n > limits.maxSignatures) {
      // One more than allowed exists only if the server still has it: ask, to say so.
      const more = await readLookaside(
        base,
        `${dir}/signature-${n}`,
        limits.maxSignatureBytes,
        upstream,
        deadline,
      ).catch(() => 'unreadable' as const);
      if (more !== 'missing')
        out.problems.push({
          source: 'lookaside',
          message: `more than ${limits.maxSignatures} signatures; only the first ${limits.maxSignatures} were considered`,
        });
      return;
    }
    let blob: Buffer | 'missing';
    try {
      blob = await readLookaside(base, `${dir}/signature-${n}`, limits.maxSignatureBytes, upstream, deadline);
    } catch (err) {
      out.problems.push({ source, message: (err as Error).message });
      return;
    }
    if (blob === 'missing') return;
    out.gpg.push({ source, blob, uri: `${base}/${dir}/signature-${n}` });
  }
}

/** One lookaside object: its bytes, or 'missing' (404 / no such file); anything else throws. */
async function readLookaside(
  base: string,
  path: string,
  maxBytes: number,
  upstream: Upstream,
  deadline: AbortSignal,
): Promise<Buffer | 'missing'> {
  const url = new URL(`${base.replace(/\/+$/, '')}/${path}`);
  if (url.protocol === 'file:') {
    let fh;
    try {
      // Non-blocking: a FIFO planted in the lookaside must not hold a thread; only regular files are read.
      fh = await open(join(decodeURIComponent(url.pathname)), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`${path} is not a file`);
      if (st.size > maxBytes) throw new Error(`signature of ${st.size} bytes exceeds ${maxBytes}`);
      const buf = Buffer.alloc(st.size);
      const { bytesRead } = await fh.read(buf, 0, st.size, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  const { headersMs, idleMs } = upstream.config.timeouts;
  const signal = AbortSignal.any([deadline, AbortSignal.timeout(headersMs + idleMs)]);
  const res = await fetch(url, { redirect: 'manual', signal });
  if (res.status === 404) {
    await res.body?.cancel();
    return 'missing';
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(
      res.status >= 300 && res.status < 400
        ? `the lookaside redirected (${res.status}); redirects are not followed`
        : `the lookaside answered ${res.status}`,
    );
  }
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel();
    throw new Error(`signature of ${declared} bytes exceeds ${maxBytes}`);
  }
  if (!res.body) return Buffer.alloc(0);
  return readBounded(Readable.fromWeb(res.body), maxBytes, 'signature');
}
