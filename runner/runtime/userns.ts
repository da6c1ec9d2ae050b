import { spawn } from 'node:child_process';
import { RunnerError } from '../errors.js';
import type { SubRange } from '../host.js';
import { findProgram } from '../unpack/confined.js';
import { hybridCgroups, holderReady } from './holder.js';

/**
 * A user namespace with the user's subordinate id range, as rootless podman makes
 * one: a holder process in a new user and mount namespace whose maps the setuid
 * helpers newuidmap and newgidmap write (0 → the user, 1… → the range). Extraction,
 * the runtime and clean-up all run inside it as its root, so an image's files keep
 * their owners (container uid 1000 is the range's 1000th id on the host) and
 * nothing ever runs with more than the user's own rights on the host.
 */
export interface UserNamespace {
  readonly pid: number;
  /** argv prefix that runs a program in the namespace (user and mount) as its root; ends with `--`. */
  readonly enter: readonly string[];
  close(): void;
}

export interface SubidPlan {
  readonly uid: number;
  readonly gid: number;
  readonly uids: SubRange;
  readonly gids: SubRange;
}

export async function openSubidNamespace(plan: SubidPlan): Promise<UserNamespace> {
  const [unshare, nsenter, setpriv] = ['unshare', 'nsenter', 'setpriv'].map((t) => findProgram(t));
  if (!unshare || !nsenter || !setpriv) throw new RunnerError('IMAGE_INVALID', 'unshare, nsenter and setpriv are needed: apt-get install util-linux');
  const newuidmap = findProgram('newuidmap', `${process.env.PATH ?? ''}:/usr/bin`);
  const newgidmap = findProgram('newgidmap', `${process.env.PATH ?? ''}:/usr/bin`);
  if (!newuidmap || !newgidmap) throw new RunnerError('IMAGE_INVALID', 'your subordinate ids need newuidmap and newgidmap: apt-get install uidmap (or run with --userns single)');
  const holder = spawn(setpriv, ['--pdeathsig', 'KILL', '--', unshare, '--user', '--mount', '--propagation', 'private', '--', 'sleep', '86400'], { stdio: 'ignore' });
  try {
    const pid = await holderReady(holder, 'user');
    await tool(newuidmap, [String(pid), '0', String(plan.uid), '1', '1', String(plan.uids.start), String(plan.uids.count)]);
    await tool(newgidmap, [String(pid), '0', String(plan.gid), '1', '1', String(plan.gids.start), String(plan.gids.count)]);
    const enter = [nsenter, '-t', String(pid), '--user', '--mount', '--setuid', '0', '--setgid', '0', '--'];
    // crun refuses hybrid cgroup hosts; inside a user namespace the cgroup2 mount can only be covered.
    if (hybridCgroups()) await tool(nsenter, [...enter.slice(1), 'mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', '/sys/fs/cgroup/unified']);
    return { pid, enter, close: () => holder.kill('SIGKILL') };
  } catch (err) {
    holder.kill('SIGKILL');
    throw err;
  }
}

/** Runs a program inside the namespace as its root; resolves when it exits 0. */
export function runIn(ns: UserNamespace, argv: readonly string[]): Promise<void> {
  const [cmd, ...rest] = ns.enter;
  return tool(cmd as string, [...rest, ...argv]);
}

function tool(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2048)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new RunnerError('IMAGE_INVALID', `${cmd.split('/').pop() ?? cmd} ${args.slice(0, 1).join(' ')}… failed (exit ${code}): ${err.trim().slice(0, 400)} — see \`secure-run doctor\`, or run with --userns single`));
    });
  });
}
