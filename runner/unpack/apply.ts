import {
  closeSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  chmodSync,
  constants,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { OciError } from '../../oci/errors.js';
import { entryComponents } from './entry-path.js';
import { UnpackError } from './errors.js';

/**
 * Applies one layer (an uncompressed tar stream) to a root directory, with OCI
 * changeset semantics (image-spec layer.md): whiteouts `.wh.<name>` delete from lower
 * layers, `.wh..wh..opq` empties a directory of what lower layers put there, an
 * existing non-directory is replaced, an existing directory keeps its contents.
 *
 * Refused, naming the entry: `..` and absolute names, anything that would be written
 * through a symlink (any parent component that is a symlink), hardlinks whose target
 * is outside the root, missing, or not a regular file, and device nodes. setuid and
 * setgid bits are stripped unless `keepSetuid`. Ownership is not applied: the
 * rootfs belongs to the extracting user, who is root inside the container.
 *
 * Modes are taken from the layer as they are: the extraction child runs with umask 0.
 *
 * Node has no openat(2): a concurrent writer could swap a checked directory for a
 * symlink between check and use. That is why this runs in a confined child whose
 * only writable path is the target (see confined.ts); the checks here give clear
 * errors, the confinement makes a race harmless.
 */
export interface ApplyOptions {
  readonly keepSetuid: boolean;
  readonly maxEntries: number;
  /**
   * When set, entries are owned by `idBase + uid` / `idBase + gid` from the tar header
   * (the host ids of the container's user namespace); ids at or above `idSize` are
   * refused. Unset: everything belongs to the extracting user.
   */
  readonly idMap?: { readonly idBase: number; readonly idSize: number } | undefined;
}

export interface ApplyResult {
  readonly entries: number;
  readonly skipped: readonly string[];
}

const OPAQUE = '.wh..wh..opq';
const WHITEOUT = '.wh.';

export async function applyLayer(root: string, tarStream: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  const extract = tar.extract();
  const created = new Set<string>();
  const dirs = new DirCache();
  const dirModes = new Map<string, number>();
  const skipped: string[] = [];
  let entries = 0;
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      (async () => {
        entries++;
        if (entries > opts.maxEntries)
          throw new UnpackError('TAR_LIMIT', `more than ${opts.maxEntries} entries in one layer`, header.name);
        await applyEntry(root, header, stream as unknown as Readable, created, skipped, opts, dirs, dirModes);
      })().then(
        () => next(),
        (err: unknown) => {
          stream.resume();
          extract.destroy(err as Error);
        },
      );
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
    tarStream.on('error', (err) => extract.destroy(err));
  });
  tarStream.pipe(extract);
  try {
    await done;
  } catch (err) {
    tarStream.destroy();
    // Ours, or the decompressor's budget (OciError SIZE_EXCEEDED): passed on as they are.
    if (err instanceof UnpackError || err instanceof OciError) throw err;
    throw new UnpackError('TAR_BAD_ENTRY', `unreadable tar stream: ${(err as Error).message}`);
  }
  // Directory modes without owner write are applied last, deepest first.
  for (const [dir, mode] of [...dirModes].sort((a, b) => b[0].length - a[0].length)) {
    if (lstatOrUndefined(dir)?.isDirectory()) chmodSync(dir, mode);
  }
  return { entries, skipped };
}

async function applyEntry(
  root: string,
  header: tar.Header,
  stream: Readable,
  created: Set<string>,
  skipped: string[],
  opts: ApplyOptions,
  dirs: DirCache,
  dirModes: Map<string, number>,
): Promise<void> {
  const name = header.name;
  const parts = entryComponents(name);
  if (parts.length === 0) {
    // The root itself ("./"): attributes of the root are left alone.
    stream.resume();
    return;
  }
  const base = parts[parts.length - 1] as string;
  const parentParts = parts.slice(0, -1);
  const parent = ensureParents(root, parentParts, name, true, dirs, opts.idMap);

  if (base === OPAQUE) {
    // Hide everything lower layers put in this directory; this layer's own entries stay.
    for (const child of readdirSync(parent)) {
      const rel = [...parentParts, child].join('/');
      if (!created.has(rel)) {
        rmSync(join(parent, child), { recursive: true, force: true });
        dirs.forget(rel);
      }
    }
    stream.resume();
    return;
  }
  if (base.startsWith(WHITEOUT)) {
    const victim = base.slice(WHITEOUT.length);
    if (victim === '' || victim === '.' || victim === '..' || victim.includes('/'))
      throw new UnpackError('TAR_BAD_ENTRY', 'invalid whiteout', name);
    rmSync(join(parent, victim), { recursive: true, force: true });
    dirs.forget([...parentParts, victim].join('/'));
    stream.resume();
    return;
  }

  const target = join(parent, base);
  const rel = parts.join('/');
  const mode = (header.mode ?? 0o644) & (opts.keepSetuid ? 0o7777 : 0o1777);
  // Create first and look only when something is in the way: most entries are new,
  // and a failed O_EXCL create is the cheap way to find out (the child runs with umask 0).
  const replacing = (): void => {
    const existing = lstatOrUndefined(target);
    if (!existing) return;
    if (existing.isDirectory()) {
      dirs.forget(rel);
      rmSync(target, { recursive: true, force: true });
    } else {
      unlinkSync(target);
    }
  };
  switch (header.type) {
    case 'directory': {
      // Owner rwx until the layer is done, so that a read-only directory can still be filled.
      const working = mode | 0o700;
      if (!tryCreate(() => mkdirSync(target, { mode: working }))) {
        const existing = lstatOrUndefined(target);
        if (existing?.isDirectory()) chmodSync(target, working);
        else {
          replacing();
          mkdirSync(target, { mode: working });
        }
      }
      if (working !== mode) dirModes.set(target, mode);
      dirs.add(rel);
      stream.resume();
      break;
    }
    case 'file':
    case 'contiguous-file': {
      let fd = tryOpen(target, mode);
      if (fd === undefined) {
        replacing();
        fd = tryOpen(target, mode);
        if (fd === undefined) throw new UnpackError('TAR_BAD_ENTRY', 'cannot create the file', name);
      }
      await writeFile(fd, stream, header.size ?? 0, name);
      break;
    }
    case 'symlink': {
      if (!header.linkname || header.linkname.includes('\0'))
        throw new UnpackError('TAR_BAD_ENTRY', 'symlink without a valid target', name);
      const linkname = header.linkname;
      if (!tryCreate(() => symlinkSync(linkname, target))) {
        replacing();
        symlinkSync(linkname, target);
      }
      stream.resume();
      break;
    }
    case 'link': {
      const linkParts = entryComponents(header.linkname ?? '');
      if (linkParts.length === 0) throw new UnpackError('TAR_HARDLINK_ESCAPE', 'hardlink to the root', name);
      const source = join(
        ensureParents(root, linkParts.slice(0, -1), name, false, dirs),
        linkParts[linkParts.length - 1] as string,
      );
      const st = lstatOrUndefined(source);
      if (!st) throw new UnpackError('TAR_HARDLINK_ESCAPE', 'hardlink to a file that is not in the image', name);
      if (!st.isFile())
        throw new UnpackError('TAR_HARDLINK_ESCAPE', 'hardlink to something other than a regular file', name);
      if (!tryCreate(() => linkSync(source, target))) {
        replacing();
        linkSync(source, target);
      }
      stream.resume();
      break;
    }
    case 'character-device':
    case 'block-device':
      throw new UnpackError('TAR_DEVICE_NODE', 'device nodes are not created', name);
    case 'fifo':
      skipped.push(name);
      stream.resume();
      return;
    default:
      throw new UnpackError('TAR_BAD_ENTRY', `unsupported entry type ${String(header.type)}`, name);
  }
  // A hardlink shares the inode of its target: its header must not change that file's owner or mode.
  if (opts.idMap && header.type !== 'link') {
    const uid = header.uid ?? 0;
    const gid = header.gid ?? 0;
    if (uid >= opts.idMap.idSize || gid >= opts.idMap.idSize || uid < 0 || gid < 0) {
      throw new UnpackError(
        'TAR_LIMIT',
        `owner ${uid}:${gid} is outside the container's ${opts.idMap.idSize} ids`,
        name,
      );
    }
    lchownSync(target, opts.idMap.idBase + uid, opts.idMap.idBase + gid);
    // chown clears setuid/setgid; put back what the (already filtered) mode says.
    if (header.type !== 'symlink') chmodSync(target, mode);
  }
  const mtime = header.mtime instanceof Date ? header.mtime : new Date(0);
  lutimesSync(target, mtime, mtime);
  created.add(rel);
}

/**
 * Makes sure every parent component is a real directory inside the root, creating
 * missing ones; a symlink anywhere on the way is refused (TAR-03, TAR-04).
 */
function ensureParents(
  root: string,
  parts: readonly string[],
  entry: string,
  create: boolean,
  dirs: DirCache,
  idMap?: ApplyOptions['idMap'],
): string {
  let dir = root;
  let rel = '';
  for (const p of parts) {
    dir = join(dir, p);
    rel = rel === '' ? p : `${rel}/${p}`;
    if (dirs.has(rel)) continue;
    const st = lstatOrUndefined(dir);
    if (!st) {
      if (!create) throw new UnpackError('TAR_HARDLINK_ESCAPE', 'hardlink target is not in the image', entry);
      mkdirSync(dir, { mode: 0o755 });
      // Implicit parents belong to the container's root, like those the layer names.
      if (idMap) lchownSync(dir, idMap.idBase, idMap.idBase);
      dirs.add(rel);
      continue;
    }
    if (st.isSymbolicLink())
      throw new UnpackError('TAR_THROUGH_SYMLINK', `would write through the symlink ${p}`, entry);
    if (!st.isDirectory()) {
      if (!create) throw new UnpackError('TAR_HARDLINK_ESCAPE', 'hardlink target path is not a directory', entry);
      unlinkSync(dir);
      mkdirSync(dir, { mode: 0o755 });
    }
    dirs.add(rel);
  }
  return dir;
}

/**
 * Directories this extraction has already seen to be real directories, so that
 * every entry does not lstat its whole path again. Anything that replaces or
 * removes a path forgets it and everything below it; nothing else in the tree
 * changes while the (single) extraction runs.
 */
class DirCache {
  readonly #known = new Set<string>();
  has(rel: string): boolean {
    return this.#known.has(rel);
  }
  add(rel: string): void {
    this.#known.add(rel);
  }
  forget(rel: string): void {
    this.#known.delete(rel);
    const prefix = `${rel}/`;
    for (const k of this.#known) if (k.startsWith(prefix)) this.#known.delete(k);
  }
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Runs a create call; false when the path already exists (EEXIST), any other error is thrown. */
function tryCreate(create: () => void): boolean {
  try {
    create();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** O_NOFOLLOW|O_EXCL: never through a symlink, never into something already there. Undefined on EEXIST. */
function tryOpen(path: string, mode: number): number | undefined {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw err;
  }
}

async function writeFile(fd: number, stream: Readable, size: number, entry: string): Promise<void> {
  let written = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      written += buf.length;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    }
    if (written !== size)
      throw new UnpackError('TAR_BAD_ENTRY', `entry has ${written} bytes, header says ${size}`, entry);
  } finally {
    closeSync(fd);
  }
}
