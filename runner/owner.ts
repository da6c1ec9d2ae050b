import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * What a run makes that a kill could leave behind carries its owner in its name:
 * `<scope>.<pid>.<starttime>`. The start time tells a reused pid apart; the scope
 * (this boot, this pid namespace, this host name) keeps a run from judging pids of
 * another namespace or machine sharing the data directory (a toolbox, an NFS home):
 * those it never removes. A run that cannot read /proc names nothing as dead.
 */
let own: string | undefined;

export function ownerTag(): string {
  own ??= ownerTagOf(process.pid);
  return own;
}

/** The tag a run with this pid would carry now. */
export function ownerTagOf(pid: number): string {
  return `${scope()}.${pid}.${startTime(pid) ?? 0}`;
}

/** Whether the process an owner tag names may still be running (true for anything this run cannot judge). */
export function ownerAlive(tag: string): boolean {
  const m = /^([0-9a-f]{8})\.(\d+)\.(\d+)$/.exec(tag);
  if (!m || m[1] !== scope() || m[3] === '0' || startTime(process.pid) === undefined) return true;
  const start = startTime(Number(m[2]));
  return start !== undefined && String(start) === m[3];
}

let scopeId: string | undefined;

function scope(): string {
  if (scopeId === undefined) {
    const read = (f: () => string): string => {
      try {
        return f();
      } catch {
        return '?';
      }
    };
    const boot = read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    const pidns = read(() => readlinkSync('/proc/self/ns/pid'));
    scopeId = createHash('sha256').update(`${boot}\n${pidns}\n${hostname()}`).digest('hex').slice(0, 8);
  }
  return scopeId;
}

/** Field 22 of /proc/PID/stat (clock ticks after boot); undefined when there is no such process. */
function startTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const value = Number(fields[19]);
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** Names made by ownedName(): `<prefix><owner>-<rest>`. */
export const OWNED = /^(?:secure-run-|\.tmp-|)([0-9a-f]{8}\.\d+\.\d+)-[0-9a-zA-Z-]+$/;

/** A name that says who made it. */
export function ownedName(prefix: string, unique: string): string {
  return `${prefix}${ownerTag()}-${unique}`;
}
