import { OciError } from './errors.js';
import { parseDigest, type Digest } from './digest.js';
import { isObject, parseStrictJson } from './strict-json.js';
import { MediaType, bareMediaType } from './media-types.js';

/**
 * Image manifests and indexes (image-spec manifest.md, image-index.md; Docker
 * manifest v2 schema 2). Only the fields we act on are modelled; the raw bytes stay
 * the source of truth and are what gets stored and served.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_DESCRIPTORS = 1000;

export interface Platform {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
  readonly urls?: readonly string[];
}

interface Common {
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}
export interface ImageManifest extends Common {
  readonly kind: 'image';
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}
export interface ImageIndex extends Common {
  readonly kind: 'index';
  readonly manifests: readonly Descriptor[];
}
export type Manifest = ImageManifest | ImageIndex;

const IMAGE_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerList]);
const SCHEMA1_TYPES = new Set<string>([MediaType.dockerSchema1, MediaType.dockerSchema1Signed]);

function invalid(message: string, cause?: unknown): OciError {
  return new OciError('MANIFEST_INVALID', message, cause === undefined ? undefined : { cause });
}

/**
 * Parses manifest bytes. `contentType` is what the server said; when the document
 * names its own mediaType the two must agree (REG-02).
 */
export function parseManifest(bytes: Uint8Array, contentType?: string): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new OciError('SIZE_EXCEEDED', `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  }
  const doc = parseStrictJson(bytes, { maxDepth: 32 });
  if (!isObject(doc)) throw invalid('manifest is not a JSON object');
  const header = bareMediaType(contentType);
  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== 'string') throw invalid('mediaType must be a string');
  if (doc.schemaVersion === 1 || (header !== undefined && SCHEMA1_TYPES.has(header))) {
    throw new OciError('MANIFEST_UNSUPPORTED', 'Docker schema 1 manifests are not supported');
  }
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  let mediaType: string;
  if (declared !== undefined) {
    const headerIsManifest = header !== undefined && (IMAGE_TYPES.has(header) || INDEX_TYPES.has(header));
    if (headerIsManifest && header !== declared) {
      throw new OciError(
        'MEDIA_TYPE_MISMATCH',
        `Content-Type ${header} disagrees with the document's mediaType ${declared}`,
      );
    }
    mediaType = declared;
  } else if (header !== undefined && (IMAGE_TYPES.has(header) || INDEX_TYPES.has(header))) {
    mediaType = header;
  } else if (Array.isArray(doc.manifests)) {
    mediaType = MediaType.ociIndex;
  } else {
    mediaType = MediaType.ociManifest;
  }
  const common = {
    mediaType,
    ...optionalString(doc, 'artifactType'),
    ...(doc.subject === undefined ? {} : { subject: parseDescriptor(doc.subject, 'subject') }),
    ...(doc.annotations === undefined ? {} : { annotations: parseAnnotations(doc.annotations, 'annotations') }),
  };
  if (IMAGE_TYPES.has(mediaType)) {
    if (doc.manifests !== undefined) throw invalid('an image manifest must not have "manifests"');
    const layers = descriptorList(doc.layers, 'layers');
    return { kind: 'image', ...common, config: parseDescriptor(doc.config, 'config'), layers };
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (doc.layers !== undefined || doc.config !== undefined)
      throw invalid('an index must not have "layers" or "config"');
    return { kind: 'index', ...common, manifests: descriptorList(doc.manifests, 'manifests') };
  }
  throw new OciError('MANIFEST_UNSUPPORTED', `unsupported manifest media type ${JSON.stringify(mediaType)}`);
}

function optionalString(doc: Record<string, unknown>, key: string): Record<string, string> {
  const v = doc[key];
  if (v === undefined) return {};
  if (typeof v !== 'string') throw invalid(`${key} must be a string`);
  return { [key]: v };
}

function descriptorList(value: unknown, where: string): Descriptor[] {
  if (!Array.isArray(value)) throw invalid(`${where} must be an array`);
  if (value.length > MAX_DESCRIPTORS) throw invalid(`${where} has more than ${MAX_DESCRIPTORS} entries`);
  return value.map((d, i) => parseDescriptor(d, `${where}[${i}]`));
}

function parseAnnotations(value: unknown, where: string): Record<string, string> {
  if (!isObject(value)) throw invalid(`${where} must be an object`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`${where}.${k} must be a string`);
  }
  return value as Record<string, string>;
}

export function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be an object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw invalid(`${where}.mediaType must be a string`);
  if (typeof digest !== 'string') throw invalid(`${where}.digest must be a string`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  let parsed: Digest;
  try {
    parsed = parseDigest(digest);
  } catch (cause) {
    throw invalid(`${where}.digest is not a valid digest`, cause);
  }
  const out: { -readonly [K in keyof Descriptor]: Descriptor[K] } = { mediaType, digest: parsed, size };
  if (value.artifactType !== undefined) {
    if (typeof value.artifactType !== 'string') throw invalid(`${where}.artifactType must be a string`);
    out.artifactType = value.artifactType;
  }
  if (value.annotations !== undefined) out.annotations = parseAnnotations(value.annotations, `${where}.annotations`);
  if (value.platform !== undefined) {
    const p = value.platform;
    if (!isObject(p) || typeof p.architecture !== 'string' || typeof p.os !== 'string') {
      throw invalid(`${where}.platform needs string architecture and os`);
    }
    out.platform = {
      architecture: p.architecture,
      os: p.os,
      ...(typeof p.variant === 'string' ? { variant: p.variant } : {}),
    };
  }
  if (value.urls !== undefined) {
    if (!Array.isArray(value.urls) || !value.urls.every((u) => typeof u === 'string'))
      throw invalid(`${where}.urls must be strings`);
    out.urls = value.urls as string[];
  }
  return out;
}

/** The blobs an image manifest makes available in its repository: config and layers. */
export function referencedBlobs(manifest: Manifest): Descriptor[] {
  return manifest.kind === 'image' ? [manifest.config, ...manifest.layers] : [];
}
