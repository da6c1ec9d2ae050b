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
  /** root: a dedicated host id range; single: the user's own id is the container's only one. */
  readonly mode: 'root' | 'single';
  readonly uidMappings: readonly IdMapping[];
  readonly gidMappings: readonly IdMapping[];
  /** Host ids for files: set when the rootfs must be owned by mapped ids (root mode). */
  readonly idMap: { idBase: number; idSize: number } | undefined;
}

/**
 * As an unprivileged user, the runtime runs in a user namespace where the user is
 * root (`unshare --map-root-user`), and the container maps its root to that: one
 * id, the user's own. Images that run as another user get a warning and run as the
 * container's root, which on the host is still just this user.
 */
export function idPlan(uid: number, _gid: number, subuid = readOr('/etc/subuid'), subgid = readOr('/etc/subgid')): IdPlan {
  if (uid !== 0) {
    const one = [{ containerID: 0, hostID: 0, size: 1 }];
    return { mode: 'single', uidMappings: one, gidMappings: one, idMap: undefined };
  }
  for (const [file, text] of [['/etc/subuid', subuid], ['/etc/subgid', subgid]] as const) {
    for (const line of text.split('\n')) {
      const [, start, count] = line.split(':');
      const s = Number(start);
      const c = Number(count);
      if (Number.isFinite(s) && Number.isFinite(c) && s < ROOT_ID_BASE + ID_RANGE && ROOT_ID_BASE < s + c) {
        throw new RunnerError('IMAGE_INVALID', `${file} gives a user ids ${s}–${s + c - 1}, which overlap secure-run's root range ${ROOT_ID_BASE}–${ROOT_ID_BASE + ID_RANGE - 1}`);
      }
    }
  }
  const m = [{ containerID: 0, hostID: ROOT_ID_BASE, size: ID_RANGE }];
  return { mode: 'root', uidMappings: m, gidMappings: m, idMap: { idBase: ROOT_ID_BASE, idSize: ID_RANGE } };
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const LIMITS: Record<string, string> = {
  'Max open files': 'RLIMIT_NOFILE', 'Max processes': 'RLIMIT_NPROC', 'Max core file size': 'RLIMIT_CORE', 'Max stack size': 'RLIMIT_STACK',
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
  if (!p) throw new RunnerError('IMAGE_INVALID', 'tini-static is needed as the container\'s init: apt-get install tini');
  return p;
}
