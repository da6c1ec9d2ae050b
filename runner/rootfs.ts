import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { RunnerError } from './errors.js';
import type { ImageCache } from './image-cache.js';
import { extractConfined, type ExtractPlan } from './unpack/confined.js';
import { runIn, type UserNamespace } from './runtime/userns.js';
import { sealOf } from './unpack/tree.js';
import { ownedName } from './owner.js';

/**
 * Unpacked images, cached by manifest digest (and id range). An entry is built in a
 * temporary directory and renamed into place only when every layer applied and
 * matched its diffID; a half-built tree is never found under the final name.
 * Callers use an entry only after the attestation check of that same run.
 */
export interface RootfsOptions {
  readonly keepSetuid: boolean;
  readonly idMap: { idBase: number; idSize: number } | undefined;
  readonly maxLayerBytes: number;
  /** Subordinate-id mode: which host ranges the namespace maps (part of the cache entry's name). */
  readonly idKey?: string | undefined;
  /** Subordinate-id mode: extraction and removal happen inside this namespace. */
  readonly userns?: UserNamespace | undefined;
}

/**
 * The mount point of a volume: each component below the root must be a real
 * directory (symlinks refused); missing ones are created, as crun would.
 */
export function ensureVolumeMountpoint(root: string, destination: string, idMap: RootfsOptions['idMap']): void {
  let path = root;
  for (const part of destination.split('/').filter((p) => p !== '')) {
    if (part === '..') throw new RunnerError('IMAGE_INVALID', `volume destination climbs out: ${destination}`);
    path = join(path, part);
    const st = lstatOrUndefined(path);
    if (st?.isSymbolicLink())
      throw new RunnerError('IMAGE_INVALID', `volume destination ${destination} goes through a symlink in the image`);
    if (st && !st.isDirectory())
      throw new RunnerError('IMAGE_INVALID', `volume destination ${destination} is not a directory in the image`);
    if (!st) {
      mkdirSync(path, { mode: 0o755 });
      if (idMap) lchownSync(path, idMap.idBase, idMap.idBase);
    }
  }
}

/**
 * The mount point of a file bound over one of the image's (`/etc/resolv.conf`): an
 * existing regular file, or an empty one created in a real directory. Anything else
 * (a symlink, a directory) is left alone: returns false and nothing is bound there.
 */
export function ensureFileMountpoint(root: string, destination: string, idMap: RootfsOptions['idMap']): boolean {
  const parent = destination
    .split('/')
    .filter((p) => p !== '')
    .slice(0, -1)
    .join('/');
  try {
    ensureVolumeMountpoint(root, `/${parent}`, idMap);
  } catch {
    return false;
  }
  const path = join(root, destination);
  const st = lstatOrUndefined(path);
  if (st) return st.isFile();
  try {
    closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
    if (idMap) lchownSync(path, idMap.idBase, idMap.idBase);
    return true;
  } catch {
    return false;
  }
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** A private, writable rootfs for one container (under `bundle`), removed with it. */
export async function privateRootfs(
  bundle: string,
  cache: ImageCache,
  layers: readonly Descriptor[],
  diffIds: readonly string[],
  opts: RootfsOptions,
): Promise<string> {
  if (layers.length !== diffIds.length)
    throw new RunnerError(
      'IMAGE_INVALID',
      `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`,
    );
  const root = join(bundle, 'rootfs');
  mkdirSync(root, { recursive: true, mode: 0o755 });
  await extractConfined(extractPlan(root, cache, layers, diffIds, opts, false), opts.userns?.enter);
  return root;
}

function extractPlan(
  root: string,
  cache: ImageCache,
  layers: readonly Descriptor[],
  diffIds: readonly string[],
  opts: RootfsOptions,
  seal: boolean,
): ExtractPlan {
  return {
    root,
    layers: layers.map((l, i) => ({ path: cache.blobPath(l.digest), diffId: diffIds[i] as string })),
    keepSetuid: opts.keepSetuid,
    maxEntries: 1_000_000,
    maxLayerBytes: opts.maxLayerBytes,
    idMap: opts.idMap,
    seal,
  };
}

function sealHolds(root: string, sealFile: string): boolean {
  let stored: Record<string, string>;
  try {
    stored = JSON.parse(readFileSync(sealFile, 'utf8')) as Record<string, string>;
  } catch {
    return false;
  }
  let now: Map<string, string>;
  try {
    now = sealOf(root);
  } catch {
    return false;
  }
  for (const [rel, value] of Object.entries(stored)) if (now.get(rel) !== value) return false;
  for (const [rel] of now) {
    if (rel in stored) continue;
    const st = lstatSync(join(root, rel));
    const emptyDir = st.isDirectory() && readdirSync(join(root, rel)).length === 0;
    const emptyFile = st.isFile() && st.size === 0;
    if (!emptyDir && !emptyFile) return false;
  }
  return true;
}

/**
 * Removes a tree even where the image made directories read-only; with subordinate
 * ids, from inside their namespace (the user cannot remove files owned by them).
 * Never throws.
 */
export async function removeTree(path: string, userns?: UserNamespace): Promise<void> {
  removeTreeSync(path);
  // What is left belongs to ids of the namespace (a private root of subordinate-id files).
  if (userns && existsSync(path))
    await runIn(userns, ['rm', '-rf', '--one-file-system', '--', path]).catch(() => undefined);
}

function removeTreeSync(path: string): void {
  const open = (p: string): void => {
    try {
      const st = lstatSync(p);
      if (!st.isDirectory()) return;
      chmodSync(p, 0o700);
      for (const name of readdirSync(p)) open(join(p, name));
    } catch {
      // best effort
    }
  };
  open(path);
  try {
    rmSync(path, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // entries of other ids: removed inside their namespace, or left for the next clean-up
  }
}

export async function prepareRootfs(
  dataDir: string,
  cache: ImageCache,
  manifestDigest: Digest,
  layers: readonly Descriptor[],
  diffIds: readonly string[],
  opts: RootfsOptions,
): Promise<string> {
  if (layers.length !== diffIds.length)
    throw new RunnerError(
      'IMAGE_INVALID',
      `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`,
    );
  const dir = join(dataDir, 'rootfs');
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
  // The host ids the tree's owners stand for are part of its name: another subordinate range is another tree.
  const name = `${manifestDigest.hex}${opts.idMap ? `-${opts.idMap.idBase}x${opts.idMap.idSize}` : ''}${opts.idKey ? `-${opts.idKey}` : ''}${opts.keepSetuid ? '-setuid' : ''}`;
  const final = join(dir, name);
  if (existsSync(join(final, 'rootfs'))) {
    if (sealHolds(join(final, 'rootfs'), join(final, 'seal.json'))) return join(final, 'rootfs');
    // Changed since it was unpacked (or unreadable from outside its namespace): never used; unpacked again below.
    await removeTree(final, opts.userns);
  }
  const tmp = join(dir, ownedName('.tmp-', randomUUID()));
  mkdirSync(join(tmp, 'rootfs'), { recursive: true, mode: 0o755 });
  chmodSync(tmp, 0o711);
  try {
    // The seal is taken inside the confinement, which can read every directory of the tree.
    const { seal } = await extractConfined(
      extractPlan(join(tmp, 'rootfs'), cache, layers, diffIds, opts, true),
      opts.userns?.enter,
    );
    writeFileSync(join(tmp, 'seal.json'), JSON.stringify(seal ?? {}), { mode: 0o600 });
    renameSync(tmp, final);
  } catch (err) {
    await removeTree(tmp, opts.userns);
    if (existsSync(join(final, 'rootfs')) && sealHolds(join(final, 'rootfs'), join(final, 'seal.json')))
      return join(final, 'rootfs');
    throw err;
  }
  return join(final, 'rootfs');
}
