import { randomUUID } from 'node:crypto';
import { chmodSync, closeSync, constants, existsSync, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { RunnerError } from './errors.js';
import type { ImageCache } from './image-cache.js';
import { extractConfined } from './unpack/confined.js';

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
}

/**
 * The mount points every runtime needs, made before the tree is used (bwrap cannot
 * create them on a read-only root). One that the image made a symlink is refused:
 * mounting /proc or /sys through a symlink is how runtimes get tricked (RUN-04).
 */
const MOUNT_DIRS = ['proc', 'sys', 'dev', 'tmp', '.secure-run'];

export function ensureMountpoints(root: string, idMap: RootfsOptions['idMap']): void {
  for (const d of MOUNT_DIRS) {
    const path = join(root, d);
    const st = lstatOrUndefined(path);
    if (st?.isSymbolicLink()) throw new RunnerError('IMAGE_INVALID', `the image makes /${d} a symlink; refusing to mount over it`);
    if (st && !st.isDirectory()) throw new RunnerError('IMAGE_INVALID', `the image makes /${d} something other than a directory`);
    if (!st) {
      mkdirSync(path, { mode: 0o755 });
      if (idMap) lchownSync(path, idMap.idBase, idMap.idBase);
    }
  }
  const init = join(root, '.secure-run', 'init');
  const st = lstatOrUndefined(init);
  if (st && !st.isFile()) throw new RunnerError('IMAGE_INVALID', 'the image has something other than a file at /.secure-run/init');
  if (!st) closeSync(openSync(init, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
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
    if (st?.isSymbolicLink()) throw new RunnerError('IMAGE_INVALID', `volume destination ${destination} goes through a symlink in the image`);
    if (st && !st.isDirectory()) throw new RunnerError('IMAGE_INVALID', `volume destination ${destination} is not a directory in the image`);
    if (!st) {
      mkdirSync(path, { mode: 0o755 });
      if (idMap) lchownSync(path, idMap.idBase, idMap.idBase);
    }
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
export async function privateRootfs(bundle: string, cache: ImageCache, layers: readonly Descriptor[], diffIds: readonly string[], opts: RootfsOptions): Promise<string> {
  if (layers.length !== diffIds.length) throw new RunnerError('IMAGE_INVALID', `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`);
  const root = join(bundle, 'rootfs');
  mkdirSync(root, { recursive: true, mode: 0o755 });
  await extractConfined({
    root, layers: layers.map((l, i) => ({ path: cache.blobPath(l.digest), diffId: diffIds[i] as string })),
    keepSetuid: opts.keepSetuid, maxEntries: 1_000_000, maxLayerBytes: opts.maxLayerBytes, idMap: opts.idMap,
  });
  ensureMountpoints(root, opts.idMap);
  return root;
}

/**
 * A seal of an unpacked tree: for every entry its type, mode, owner and inode, and
 * for files and symlinks also size and ctime (which no one can set back). A cached
 * tree is used only when its seal still holds: anything of the user's (or a
 * container given the cache as a volume) that changed a file in it is detected,
 * and the tree is unpacked again. Empty directories and empty files that runtimes
 * create as mount points are tolerated.
 */
export function sealOf(root: string): Map<string, string> {
  const seal = new Map<string, string>();
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path, { bigint: true });
      const common = `${st.mode}:${st.uid}:${st.gid}:${st.ino}`;
      if (st.isDirectory()) {
        seal.set(r, common);
        walk(path, r);
      } else {
        seal.set(r, `${common}:${st.size}:${st.ctimeNs}`);
      }
    }
  };
  walk(root, '');
  return seal;
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

/** Removes a tree even where the image made directories read-only. Never throws. */
export function removeTree(path: string): void {
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
  rmSync(path, { recursive: true, force: true, maxRetries: 2 });
}

export async function prepareRootfs(dataDir: string, cache: ImageCache, manifestDigest: Digest, layers: readonly Descriptor[], diffIds: readonly string[], opts: RootfsOptions): Promise<string> {
  if (layers.length !== diffIds.length) throw new RunnerError('IMAGE_INVALID', `the manifest has ${layers.length} layers and the config ${diffIds.length} diffIDs`);
  const dir = join(dataDir, 'rootfs');
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
  const name = `${manifestDigest.hex}${opts.idMap ? `-${opts.idMap.idBase}` : ''}${opts.keepSetuid ? '-setuid' : ''}`;
  const final = join(dir, name);
  if (existsSync(join(final, 'rootfs'))) {
    if (sealHolds(join(final, 'rootfs'), join(final, 'seal.json'))) return join(final, 'rootfs');
    // Changed since it was unpacked: never used; unpacked again below.
    removeTree(final);
  }
  const tmp = join(dir, `.tmp-${randomUUID()}`);
  mkdirSync(join(tmp, 'rootfs'), { recursive: true, mode: 0o755 });
  chmodSync(tmp, 0o711);
  try {
    await extractConfined({
      root: join(tmp, 'rootfs'),
      layers: layers.map((l, i) => ({ path: cache.blobPath(l.digest), diffId: diffIds[i] as string })),
      keepSetuid: opts.keepSetuid, maxEntries: 1_000_000, maxLayerBytes: opts.maxLayerBytes, idMap: opts.idMap,
    });
    ensureMountpoints(join(tmp, 'rootfs'), opts.idMap);
    writeFileSync(join(tmp, 'seal.json'), JSON.stringify(Object.fromEntries(sealOf(join(tmp, 'rootfs')))), { mode: 0o600 });
    renameSync(tmp, final);
  } catch (err) {
    removeTree(tmp);
    if (existsSync(join(final, 'rootfs')) && sealHolds(join(final, 'rootfs'), join(final, 'seal.json'))) return join(final, 'rootfs');
    throw err;
  }
  return join(final, 'rootfs');
}
