import { readFileSync } from 'node:fs';
import { RunnerError } from './errors.js';
import type { IdMapping, Rlimit } from './runtime/spec.js';
import { findProgram } from './unpack/confined.js';

/**
 * Facts about this host that the runtime spec needs: which host ids the container
 * may use, the current resource limits, and the init binary.
 *
 * As root, the container still never runs as real root: it gets a dedicated range
 * of 65536 host ids starting at ROOT_ID_BASE, which must not overlap any range in
 * /etc/subuid or /etc/subgid (those belong to users).
 */
export const ROOT_ID_BASE = 0x70000000;
export const ID_RANGE = 65536;

export interface IdPlan {
  /**
   * root: a dedicated host id range; subids: the user's own id as the container's
   * root and the user's subordinate range (/etc/subuid, /etc/subgid) for the rest;
   * single: the user's own id is the container's only one.
   */
  readonly mode: 'root' | 'subids' | 'single';
  /** Mappings of the container's user namespace, relative to the namespace the runtime runs in. */
  readonly uidMappings: readonly IdMapping[];
  readonly gidMappings: readonly IdMapping[];
  /**
   * Ids for files of the rootfs, as seen where the extraction runs: host ids (root
   * mode) or ids of the user namespace with the subordinate range (subids mode).
   */
  readonly idMap: { idBase: number; idSize: number } | undefined;
  /** subids mode: the user namespace secure-run sets up with newuidmap/newgidmap. */
  readonly subids?:
    { readonly uid: number; readonly gid: number; readonly uids: SubRange; readonly gids: SubRange } | undefined;
}

export interface SubRange {
  readonly start: number;
  readonly count: number;
}

export interface IdPlanInput {
  readonly uid: number;
  readonly gid: number;
  /** The login name, for /etc/subuid entries by name. */
  readonly user?: string | undefined;
  /** auto: use a subordinate range when the user has one; single: never. */
  readonly userns?: 'auto' | 'single';
  readonly subuid?: string;
  readonly subgid?: string;
}

/**
 * As an unprivileged user with a subordinate id range (useradd gives one by
 * default), the container's root is the user and its other ids come from that
 * range, as with rootless podman. Without one (or with `--userns single`), the
 * container has one id, the user's own: images that run as another user get a
 * warning and run as the container's root, which on the host is still just this user.
 */
export function idPlan(input: IdPlanInput): IdPlan {
  const subuid = input.subuid ?? readOr('/etc/subuid');
  const subgid = input.subgid ?? readOr('/etc/subgid');
  if (input.uid !== 0) {
    const uids = input.userns === 'single' ? undefined : subRange(subuid, input.uid, input.user);
    const gids = input.userns === 'single' ? undefined : subRange(subgid, input.uid, input.user);
    if (uids && gids) {
      const size = 1 + Math.min(uids.count, gids.count, ID_RANGE - 1);
      // One extent per extent of the namespace's own map: the kernel refuses an extent that spans two.
      const m = [
        { containerID: 0, hostID: 0, size: 1 },
        { containerID: 1, hostID: 1, size: size - 1 },
      ];
      const clipped = { uids: { start: uids.start, count: size - 1 }, gids: { start: gids.start, count: size - 1 } };
      return {
        mode: 'subids',
        uidMappings: m,
        gidMappings: m,
        idMap: { idBase: 0, idSize: size },
        subids: { uid: input.uid, gid: input.gid, ...clipped },
      };
    }
    const one = [{ containerID: 0, hostID: 0, size: 1 }];
    return { mode: 'single', uidMappings: one, gidMappings: one, idMap: undefined };
  }
  for (const [file, text] of [
    ['/etc/subuid', subuid],
    ['/etc/subgid', subgid],
  ] as const) {
    for (const line of text.split('\n')) {
      const [, start, count] = line.split(':');
      const s = Number(start);
      const c = Number(count);
      if (Number.isFinite(s) && Number.isFinite(c) && s < ROOT_ID_BASE + ID_RANGE && ROOT_ID_BASE < s + c) {
        throw new RunnerError(
          'IMAGE_INVALID',
          `${file} gives a user ids ${s}–${s + c - 1}, which overlap secure-run's root range ${ROOT_ID_BASE}–${ROOT_ID_BASE + ID_RANGE - 1}`,
        );
      }
    }
  }
  const m = [{ containerID: 0, hostID: ROOT_ID_BASE, size: ID_RANGE }];
  return { mode: 'root', uidMappings: m, gidMappings: m, idMap: { idBase: ROOT_ID_BASE, idSize: ID_RANGE } };
}

/** The first range of /etc/subuid or /etc/subgid for this user (by name or by number), if any. */
export function subRange(text: string, uid: number, user: string | undefined): SubRange | undefined {
  for (const line of text.split('\n').slice(0, 100_000)) {
    const parts = line.trim().split(':');
    if (parts.length !== 3) continue;
    const [owner, start, count] = parts as [string, string, string];
    if (owner !== String(uid) && (user === undefined || owner !== user)) continue;
    if (!/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
    const s = Number(start);
    const c = Number(count);
    if (c >= 1 && s > 0 && s + c <= 0xffffffff) return { start: s, count: c };
  }
  return undefined;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const LIMITS: Record<string, string> = {
  'Max open files': 'RLIMIT_NOFILE',
  'Max processes': 'RLIMIT_NPROC',
  'Max core file size': 'RLIMIT_CORE',
  'Max stack size': 'RLIMIT_STACK',
};

/** This process's limits (/proc/self/limits): the container never gets more. */
export function hostRlimits(text = readOr('/proc/self/limits')): Rlimit[] {
  const out: Rlimit[] = [];
  for (const line of text.split('\n')) {
    for (const [label, type] of Object.entries(LIMITS)) {
      if (!line.startsWith(label)) continue;
      const [soft, hard] = line.slice(label.length).trim().split(/\s+/);
      const num = (v: string | undefined) => (v === 'unlimited' ? 2 ** 53 - 1 : Number(v));
      if (soft !== undefined && hard !== undefined && Number.isFinite(num(soft)) && Number.isFinite(num(hard))) {
        out.push({ type, soft: Math.min(num(soft), 2 ** 32), hard: Math.min(num(hard), 2 ** 32) });
      }
    }
  }
  return out.filter((r) => r.type === 'RLIMIT_NOFILE' || r.type === 'RLIMIT_NPROC');
}

export function initBinary(): string {
  const p = findProgram('tini-static', `${process.env.PATH ?? ''}:/usr/bin:/usr/sbin`);
  if (!p) throw new RunnerError('IMAGE_INVALID', "tini-static is needed as the container's init: apt-get install tini");
  return p;
}
