import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import { assertTag } from '../../oci/reference.js';
import type { Digest } from '../../oci/digest.js';
import { MediaType } from '../../oci/media-types.js';
import { parseManifest, type Descriptor } from '../../oci/manifest.js';
import { UpstreamError } from '../../oci/errors.js';
import { header } from '../../oci/registry-client/client.js';
import { GatewayError } from '../errors.js';
import type { Address } from '../upstreams.js';

const MAX_LIST_BYTES = 4 * 1024 * 1024;
export const MAX_PAGE = 1000;

/**
 * Tag lists are paginated here, per the distribution-spec, whatever the upstream
 * does (distribution 2.8 ignores n and last and returns tags unsorted): the upstream
 * list is read once (bounded), sorted ASCIIbetically, and cut at `last` and `n`.
 */
export async function listTags(
  addr: Address,
  n: number | undefined,
  last: string | undefined,
): Promise<{ tags: string[]; next: string | undefined }> {
  const res = await addr.upstream.client.small(
    addr.repository,
    `/v2/${addr.repository}/tags/list`,
    'application/json',
    MAX_LIST_BYTES,
  );
  if (res.status === 404) throw new GatewayError('NAME_UNKNOWN', `${addr.name} is not known upstream`);
  if (res.status !== 200)
    throw new UpstreamError('UPSTREAM_PROTOCOL', `tags list answered ${res.status}`, { status: res.status });
  const doc = parseStrictJson(res.bytes, { maxDepth: 4 });
  const raw = isObject(doc) && Array.isArray(doc.tags) ? doc.tags : isObject(doc) && doc.tags === null ? [] : undefined;
  if (raw === undefined) throw new UpstreamError('UPSTREAM_PROTOCOL', 'tags list has no "tags" array');
  const all = [...new Set(raw.filter((t): t is string => typeof t === 'string' && isTag(t)))].sort();
  const after = last === undefined ? all : all.filter((t) => t > last);
  const limit = n === undefined ? after.length : n;
  const tags = after.slice(0, limit);
  const next = n !== undefined && n > 0 && after.length > limit ? tags[tags.length - 1] : undefined;
  return { tags, next };
}

function isTag(t: string): boolean {
  try {
    assertTag(t);
    return true;
  } catch {
    return false;
  }
}

export function parsePageSize(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,7}$/.test(value) || Number(value) > MAX_PAGE) {
    throw new GatewayError('PAGINATION_INVALID', `n must be a whole number from 0 to ${MAX_PAGE}`);
  }
  return Number(value);
}

/**
 * The referrers of an admitted subject (distribution-spec 1.1 §Listing Referrers);
 * the caller answers for any other digest with an empty index, as the spec requires.
 * From the upstream's referrers API when it has one; otherwise from its
 * referrers-tag fallback (`sha256-<hex>`), so clients of the gateway always get an
 * answer. Filtering by artifactType is applied here and announced.
 */
export async function listReferrers(
  addr: Pick<Address, 'upstream' | 'repository'>,
  subject: Digest,
  artifactType: string | undefined,
): Promise<{ manifests: Descriptor[]; filtered: boolean }> {
  const client = addr.upstream.client;
  let entries: Descriptor[] = [];
  const res = await client.small(
    addr.repository,
    `/v2/${addr.repository}/referrers/${subject.text}`,
    MediaType.ociIndex,
    MAX_LIST_BYTES,
  );
  if (res.status === 200) {
    entries = indexEntries(res.bytes, header(res.headers, 'content-type'));
  } else if (res.status === 404) {
    const fallback = await client.manifest(
      addr.repository,
      `${subject.algorithm}-${subject.hex}`,
      'GET',
      MediaType.ociIndex,
      MAX_LIST_BYTES,
    );
    if (fallback) entries = indexEntries(fallback.bytes, header(fallback.headers, 'content-type'));
  } else {
    throw new UpstreamError('UPSTREAM_PROTOCOL', `referrers answered ${res.status}`, { status: res.status });
  }
  if (artifactType === undefined) return { manifests: entries, filtered: false };
  return { manifests: entries.filter((d) => d.artifactType === artifactType), filtered: true };
}

function indexEntries(bytes: Buffer, contentType: string | undefined): Descriptor[] {
  const m = parseManifest(bytes, contentType);
  if (m.kind !== 'index') throw new UpstreamError('UPSTREAM_PROTOCOL', 'referrers list is not an index');
  return [...m.manifests];
}

/** A descriptor as JSON again, for a synthesised index. */
export function descriptorJson(d: Descriptor): Record<string, unknown> {
  return {
    mediaType: d.mediaType,
    digest: d.digest.text,
    size: d.size,
    ...(d.artifactType !== undefined ? { artifactType: d.artifactType } : {}),
    ...(d.annotations !== undefined ? { annotations: d.annotations } : {}),
  };
}
