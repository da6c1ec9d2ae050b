import { readFileSync } from 'node:fs';

/**
 * What a run makes that a kill could leave behind carries its owner in its name:
 * `<pid>.<starttime>` (a pid alone could have been reused; the start time tells).
 */
let own: string | undefined;

export function ownerTag(pid = process.pid): string {
  if (pid === process.pid) return (own ??= `${pid}.${startTime(pid) ?? 0}`);
  return `${pid}.${startTime(pid) ?? 0}`;
}

/** Whether the process an owner tag names is still running. */
export function ownerAlive(tag: string): boolean {
  const m = /^(\d+)\.(\d+)$/.exec(tag);
  if (!m) return true;
  const start = startTime(Number(m[1]));
  return start !== undefined && String(start) === m[2];
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
  return Number.isFinite(value) ? value : undefined;
}

/** Names made by ownedName(): `<prefix><owner>-<rest>`. */
export const OWNED = /^(?:secure-run-|\.tmp-|)(\d+\.\d+)-[0-9a-zA-Z-]+$/;

/** A name that says who made it. */
export function ownedName(prefix: string, unique: string): string {
  return `${prefix}${ownerTag()}-${unique}`;
}
