import { OciError } from './errors.js';
import { parseDigest, type Digest } from './digest.js';

/**
 * Names, tags and references, per the distribution-spec grammar (spec.md "Pulling
 * manifests") and docker/reference normalize.go for docker.io.
 */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const MAX_NAME_LENGTH = 255;
const MAX_COMPONENTS = 32;

/** Throws NAME_INVALID unless `name` is a valid repository path (no host part). */
export function assertRepositoryName(name: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new OciError('NAME_INVALID', `repository name must be 1 to ${MAX_NAME_LENGTH} characters`);
  }
  const parts = name.split('/');
  if (parts.length > MAX_COMPONENTS)
    throw new OciError('NAME_INVALID', `repository name has more than ${MAX_COMPONENTS} components`);
  for (const part of parts) {
    if (!COMPONENT.test(part)) {
      throw new OciError('NAME_INVALID', `invalid repository name component ${JSON.stringify(part.slice(0, 80))}`);
    }
  }
}

export function isRepositoryComponent(text: string): boolean {
  return COMPONENT.test(text);
}

export function assertTag(tag: string): void {
  if (typeof tag !== 'string' || !TAG.test(tag)) {
    throw new OciError('TAG_INVALID', `invalid tag ${JSON.stringify(String(tag).slice(0, 140))}`);
  }
}

/** A manifest reference as it appears in a URL: a tag or a digest. */
export type ManifestRef = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseManifestRef(text: string): ManifestRef {
  if (text.includes(':')) return { kind: 'digest', digest: parseDigest(text) };
  assertTag(text);
  return { kind: 'tag', tag: text };
}

export function refText(ref: ManifestRef): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest.text;
}

/** Host names as clients write them: lower-case, optional port. */
export function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  if (lower === 'index.docker.io' || lower === 'registry-1.docker.io') return 'docker.io';
  if (lower.endsWith(':443')) return lower.slice(0, -4);
  return lower;
}

const HOST =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$|^\[[0-9a-f:.]+\](?::[0-9]{1,5})?$/i;

export function isValidHost(host: string): boolean {
  return host.length <= 255 && HOST.test(host);
}

/** A fully qualified image reference: host/repository[:tag][@digest]. */
export interface ImageReference {
  readonly host: string;
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: Digest | undefined;
}

/**
 * Parses what a user types (`alpine`, `ghcr.io/a/b:1`, `127.0.0.1:5000/x@sha256:…`)
 * with docker.io normalisation: the first component is a host iff it contains `.` or
 * `:` or is `localhost`; docker.io names without a slash get `library/`.
 */
export function parseImageReference(text: string): ImageReference {
  if (typeof text !== 'string' || text.length === 0 || text.length > 512) {
    throw new OciError('NAME_INVALID', 'image reference must be 1 to 512 characters');
  }
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = parseDigest(rest.slice(at + 1));
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    assertTag(tag);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  let host = 'docker.io';
  let repository = rest;
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      if (!isValidHost(first)) throw new OciError('NAME_INVALID', `invalid registry host ${JSON.stringify(first)}`);
      host = normalizeHost(first);
      repository = rest.slice(slash + 1);
    }
  }
  if (host === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  assertRepositoryName(repository);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { host, repository, tag, digest };
}

export function formatImageReference(ref: ImageReference): string {
  let out = `${ref.host}/${ref.repository}`;
  if (ref.tag !== undefined) out += `:${ref.tag}`;
  if (ref.digest !== undefined) out += `@${ref.digest.text}`;
  return out;
}
