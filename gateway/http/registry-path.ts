import { parseDigest, type Digest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { parseManifestRef, type ManifestRef } from '../../oci/reference.js';

/**
 * Splits `/v2/<name>/<endpoint>` (distribution-spec §Endpoints). `<name>` contains
 * slashes, so the endpoint is found from the right. Percent-escapes are refused
 * outright: no valid name, tag or digest needs one, and decoding them is how
 * `a%2f..%2fb` style names sneak past a grammar check (THREATS REG-12).
 */
export type RegistryPath =
  | { readonly kind: 'manifest'; readonly name: string; readonly ref: ManifestRef }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: Digest }
  | { readonly kind: 'tags'; readonly name: string }
  | { readonly kind: 'referrers'; readonly name: string; readonly digest: Digest }
  /** The gateway's own attestation envelope (`_` cannot start a path component of a name). */
  | { readonly kind: 'attestation'; readonly name: string; readonly digest: Digest };

export function parseRegistryPath(path: string): RegistryPath | undefined {
  if (!path.startsWith('/v2/')) return undefined;
  if (path.includes('%')) throw new OciError('NAME_INVALID', 'escaped characters are not allowed in registry paths');
  const rest = path.slice(4);
  let m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'manifest', name: m[1] as string, ref: parseManifestRef(m[2] as string) };
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'blob', name: m[1] as string, digest: parseDigest(m[2] as string) };
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m) return { kind: 'tags', name: m[1] as string };
  m = /^(.+)\/_portcullis\/attestation\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'attestation', name: m[1] as string, digest: parseDigest(m[2] as string) };
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'referrers', name: m[1] as string, digest: parseDigest(m[2] as string) };
  return undefined;
}
