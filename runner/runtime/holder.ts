import type { ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { RunnerError } from '../errors.js';

/**
 * The small process that holds namespaces open for a runtime, and supervision of
 * the runtime process itself (signal forwarding, exit status as a shell reports it).
 */
export async function holderReady(holder: ChildProcess, ns: 'mnt' | 'user' | 'net'): Promise<number> {
  const pid = holder.pid;
  if (pid === undefined) throw new RunnerError('IMAGE_INVALID', 'could not start the namespace holder');
  const mine = readlinkSync(`/proc/self/ns/${ns}`);
  // Polled often at first: the holder is ready within a few milliseconds, and every
  // launch waits for it. A loaded machine gets ten seconds before it counts as a failure.
  const deadline = Date.now() + 10_000;
  for (let i = 0; ; i++) {
    try {
      if (
        readlinkSync(`/proc/${pid}/ns/${ns}`) !== mine &&
        readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
      )
        return pid;
    } catch {
      // not there yet
    }
    // Looked at once more after the deadline: a stalled event loop is not a failed holder.
    if (holder.exitCode !== null || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, i < 100 ? 1 : 5));
  }
  throw new RunnerError(
    'IMAGE_INVALID',
    `the namespace holder did not start (are ${ns === 'user' ? 'user' : ns === 'net' ? 'network' : 'mount'} namespaces allowed?)`,
  );
}

/** Forwards SIGINT, SIGTERM and SIGHUP (a closed terminal), and reports the exit status as a shell would. */
export function supervise(child: ChildProcess): Promise<number> {
  const onInt = () => child.kill('SIGINT');
  const onTerm = () => child.kill('SIGTERM');
  const onHup = () => child.kill('SIGHUP');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onHup);
  return new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onHup);
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

/** A hybrid cgroup host: cgroup v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified (crun refuses those). */
export function hybridCgroups(): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.includes(' /sys/fs/cgroup/unified ') && l.includes(' - cgroup2 '));
  } catch {
    return false;
  }
}
