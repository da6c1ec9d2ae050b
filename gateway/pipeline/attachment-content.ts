import { assertDigest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import type { Descriptor, ImageManifest } from '../../oci/manifest.js';
import { MediaType } from '../../oci/media-types.js';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { BlobStore } from '../store/blob-store.js';
import type { Address } from '../upstreams.js';
import { MAX_ATTACHMENT_CONFIG_BYTES, MAX_ATTACHMENT_LAYER_BYTES } from './attachments.js';

/**
 * An attachment must be one by its bytes, not only by the media types its manifest
 * claims (a real image config and gzip tar layers labelled `application/vnd.in-toto+json`
 * would otherwise pass): before an attachment is stored, its config and every layer are
 * read (from the store when already there, else from the upstream, each checked
 * against its digest), and
 *   - the config must not describe a runnable image: no non-empty `os` or
 *     `architecture`, no entrypoint or command (cosign's own signature config is an
 *     image config with empty `os` and `architecture`, and passes);
 *   - no layer may be an archive or compressed stream (tar, gzip, zstd, bzip2, xz,
 *     zip), JSON types must be JSON, text types text.
 * What passed is stored with the attachment, whose blobs are then served from the store only.
 * Invariant: nothing served as an attachment can be unpacked into a root filesystem.
 */
export const MAX_ATTACHMENT_TOTAL_BYTES = 64 * 1024 * 1024;

export type AttachmentSource = (descriptor: Descriptor, maxBytes: number) => Promise<Buffer>;

/** Reads attachment blobs from the store, or from the address's upstream, each checked against its digest. */
export function attachmentSource(addr: Address, store: BlobStore): AttachmentSource {
  return async (d, maxBytes) => {
    if (d.size > maxBytes) throw notAttachment(`blob ${d.digest.text} of ${d.size} bytes is larger than ${maxBytes}`);
    const stored = await store.readBytes(d.digest, maxBytes);
    if (stored !== undefined && stored.length === d.size) return stored;
    const bytes = await addr.upstream.client.smallBlob(addr.repository, d.digest.text, d.size);
    if (bytes.length !== d.size) {
      throw notAttachment(`blob ${d.digest.text} has ${bytes.length} bytes, its descriptor says ${d.size}`);
    }
    assertDigest(bytes, d.digest);
    return bytes;
  };
}

/**
 * Throws MANIFEST_INVALID unless every blob of `manifest` is attachment content;
 * otherwise returns the blobs, for the caller to store (nothing is stored before all passed).
 */
export async function checkAttachmentContent(
  manifest: ImageManifest,
  read: AttachmentSource,
): Promise<{ descriptor: Descriptor; bytes: Buffer }[]> {
  const total = manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
  if (total > MAX_ATTACHMENT_TOTAL_BYTES) {
    throw notAttachment(`its blobs add up to ${total} bytes, more than ${MAX_ATTACHMENT_TOTAL_BYTES}`);
  }
  const config = await read(manifest.config, MAX_ATTACHMENT_CONFIG_BYTES);
  const configProblem = runnableConfig(manifest.config.mediaType, config);
  if (configProblem !== undefined) throw notAttachment(`config ${manifest.config.digest.text}: ${configProblem}`);
  const out = [{ descriptor: manifest.config, bytes: config }];
  for (const [i, layer] of manifest.layers.entries()) {
    const bytes = await read(layer, MAX_ATTACHMENT_LAYER_BYTES);
    const problem = contentProblem(layer.mediaType, bytes);
    if (problem !== undefined) throw notAttachment(`layer ${i} (${layer.mediaType}): ${problem}`);
    out.push({ descriptor: layer, bytes });
  }
  return out;
}

function notAttachment(why: string): OciError {
  return new OciError('MANIFEST_INVALID', `not served as an attachment: ${why}`);
}

/** Why a config blob describes something that could run, or undefined. */
export function runnableConfig(mediaType: string, bytes: Buffer): string | undefined {
  if (mediaType === MediaType.ociEmpty && bytes.toString('utf8') !== '{}') return 'an empty config must be {}';
  const archive = archiveKind(bytes);
  if (archive) return `it is ${archive}`;
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, { maxDepth: 16 });
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  if (!isObject(doc)) return 'not a JSON object';
  for (const field of ['os', 'architecture'] as const) {
    const v = doc[field];
    if (v !== undefined && v !== '') return `it names ${field} ${JSON.stringify(v).slice(0, 40)}: an image config`;
  }
  const c = doc.config;
  if (
    isObject(c) &&
    ((Array.isArray(c.Entrypoint) && c.Entrypoint.length > 0) || (Array.isArray(c.Cmd) && c.Cmd.length > 0))
  ) {
    return 'it has an entrypoint or command: an image config';
  }
  return undefined;
}

/** Why a layer's bytes are not what an attachment of `mediaType` holds, or undefined. */
export function contentProblem(mediaType: string, bytes: Buffer): string | undefined {
  const archive = archiveKind(bytes);
  if (archive) return `it is ${archive}, not ${mediaType}`;
  const bare = mediaType.split(';')[0]?.trim() ?? '';
  if (bare.endsWith('+json') || bare.endsWith('/json')) {
    try {
      parseStrictJson(bytes, { maxDepth: 128 });
    } catch (err) {
      return `not JSON: ${(err as Error).message}`;
    }
    return undefined;
  }
  if (bare.startsWith('text/')) {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      if (text.includes('\0')) return 'text with a NUL byte';
    } catch {
      return 'not UTF-8 text';
    }
  }
  return undefined;
}

/** The archive or compression format `bytes` start with, if any (magic numbers). */
export function archiveKind(bytes: Buffer): string | undefined {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) return 'gzip data';
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0xfd2fb528) return 'zstd data';
  if (bytes.length >= 4 && (bytes.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50) return 'zstd data';
  if (bytes.length >= 3 && bytes.toString('latin1', 0, 3) === 'BZh') return 'bzip2 data';
  if (bytes.length >= 6 && bytes.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])))
    return 'xz data';
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x04034b50) return 'a zip archive';
  if (bytes.length >= 263 && bytes.toString('latin1', 257, 262) === 'ustar') return 'a tar archive';
  // A tar header without the ustar magic (v7): a valid header checksum over the first 512 bytes.
  if (bytes.length >= 512 && v7TarChecksum(bytes)) return 'a tar archive';
  return undefined;
}

function v7TarChecksum(bytes: Buffer): boolean {
  const field = bytes.toString('latin1', 148, 156).replace(/\0.*$/, '').trim();
  if (!/^[0-7]{1,8}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (bytes[i] as number);
  return sum === parseInt(field, 8) && sum !== 8 * 0x20;
}
