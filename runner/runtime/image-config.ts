import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import { RunnerError } from '../errors.js';

/** The parts of an OCI image config (image-spec config.md) that shape a container. */
export interface ImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly workingDir: string;
  readonly user: string;
  readonly diffIds: readonly string[];
}

const MAX_CONFIG_BYTES = 1024 * 1024;

export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  if (bytes.length > MAX_CONFIG_BYTES)
    throw new RunnerError('IMAGE_INVALID', `image config larger than ${MAX_CONFIG_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, { maxDepth: 16 });
  } catch (err) {
    throw new RunnerError('IMAGE_INVALID', `image config: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(doc) || typeof doc.architecture !== 'string' || typeof doc.os !== 'string')
    throw new RunnerError('IMAGE_INVALID', 'image config needs architecture and os');
  const rootfs = doc.rootfs;
  if (
    !isObject(rootfs) ||
    rootfs.type !== 'layers' ||
    !Array.isArray(rootfs.diff_ids) ||
    !rootfs.diff_ids.every((d) => typeof d === 'string')
  ) {
    throw new RunnerError('IMAGE_INVALID', 'image config rootfs must be {type: layers, diff_ids: [...]}');
  }
  const c = doc.config === null || doc.config === undefined ? {} : doc.config;
  if (!isObject(c)) throw new RunnerError('IMAGE_INVALID', 'image config "config" must be an object');
  return {
    architecture: doc.architecture,
    os: doc.os,
    entrypoint: strings(c.Entrypoint, 'Entrypoint'),
    cmd: strings(c.Cmd, 'Cmd'),
    env: strings(c.Env, 'Env'),
    workingDir: optionalString(c.WorkingDir, 'WorkingDir') || '/',
    user: optionalString(c.User, 'User'),
    diffIds: rootfs.diff_ids as string[],
  };
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string'))
    throw new RunnerError('IMAGE_INVALID', `image config ${what} must be a list of strings`);
  return v as string[];
}

function optionalString(v: unknown, what: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new RunnerError('IMAGE_INVALID', `image config ${what} must be a string`);
  return v;
}
