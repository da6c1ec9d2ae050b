import { closeSync, constants, lchownSync, lstatSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UnpackError } from './errors.js';

/** What the confined extraction does to a finished tree: mount points, and its seal. */
/**
 * The mount points every runtime needs, made before the tree is used (bwrap cannot
 * create them on a read-only root). One that the image made a symlink is refused:
 * mounting /proc or /sys through a symlink is how runtimes get tricked (RUN-04).
 */
const MOUNT_DIRS = ['proc', 'sys', 'dev', 'tmp', '.secure-run'];

export function ensureMountpoints(root: string, idMap: { idBase: number; idSize: number } | undefined): void {
  for (const d of MOUNT_DIRS) {
    const path = join(root, d);
    const st = lstatOrUndefined(path);
    if (st?.isSymbolicLink())
      throw new UnpackError('TAR_BAD_ENTRY', `the image makes /${d} a symlink; refusing to mount over it`);
    if (st && !st.isDirectory())
      throw new UnpackError('TAR_BAD_ENTRY', `the image makes /${d} something other than a directory`);
    if (!st) {
      mkdirSync(path, { mode: 0o755 });
      if (idMap) lchownSync(path, idMap.idBase, idMap.idBase);
    }
  }
  const init = join(root, '.secure-run', 'init');
  const st = lstatOrUndefined(init);
  if (st && !st.isFile())
    throw new UnpackError('TAR_BAD_ENTRY', 'the image has something other than a file at /.secure-run/init');
  if (!st)
    closeSync(openSync(init, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * A seal of an unpacked tree: for every entry its type, mode and inode, and for
 * files and symlinks also size and ctime (which no one can set back, and which a
 * change of owner moves too). Owners are left out: the seal is taken inside the
 * extraction's user namespace and checked outside it, where the same ids read
 * differently; a directory's owner changing is therefore not seen (changing it needs
 * root, or the container's root with the cache mounted into it). A cached
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
      const common = `${st.mode}:${st.ino}`;
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
