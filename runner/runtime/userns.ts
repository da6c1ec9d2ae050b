import { spawn } from 'node:child_process';
import { RunnerError } from '../errors.js';
import type { SubRange } from '../host.js';
import { findProgram } from '../unpack/confined.js';
import { hybridCgroups, holderReady } from './holder.js';

/**
 * The user namespace an unprivileged user's containers run in, held open by a small
 * process for the length of one run. With a subordinate id range it is made as
 * rootless podman makes one: the holder's maps are written by the setuid helpers
 * newuidmap and newgidmap (0 → the user, 1… → the range), so an image's files keep
 * their owners (container uid 1000 is the range's 1000th id). Without a range it
 * maps only the user, as the namespace's root. Extraction, the runtime and clean-up
 * all run inside it, and nothing ever has more than the user's own rights on the host.
 *
 * With `net`, the holder also has its own network namespace, for a user-mode network
 * stack (slirp4netns) to serve; the container then shares it.
 */
export interface UserNamespace {
  readonly pid: number;
  /** argv prefix that runs a program in the namespace (user and mount, and network with `net`) as its root; ends with `--`. */
  readonly enter: readonly string[];
  /** Whether the holder has its own network namespace. */
  readonly net: boolean;
  close(): void;
}

export interface SubidPlan {
  readonly uid: number;
  readonly gid: number;
  readonly uids: SubRange;
  readonly gids: SubRange;
}

export async function openUserNamespace(opts: {
  subids?: SubidPlan | undefined;
  net: boolean;
}): Promise<UserNamespace> {
  const [unshare, nsenter, setpriv] = ['unshare', 'nsenter', 'setpriv'].map((t) => findProgram(t));
  if (!unshare || !nsenter || !setpriv)
    throw new RunnerError('IMAGE_INVALID', 'unshare, nsenter and setpriv are needed: apt-get install util-linux');
  const plan = opts.subids;
  const newuidmap = findProgram('newuidmap', `${process.env.PATH ?? ''}:/usr/bin`);
  const newgidmap = findProgram('newgidmap', `${process.env.PATH ?? ''}:/usr/bin`);
  if (plan && (!newuidmap || !newgidmap))
    throw new RunnerError(
      'IMAGE_INVALID',
      'your subordinate ids need newuidmap and newgidmap: apt-get install uidmap (or run with --userns single)',
    );
  const net = opts.net ? ['--net'] : [];
  const holder = spawn(
    setpriv,
    [
      '--pdeathsig',
      'KILL',
      '--',
      unshare,
      '--user',
      ...(plan ? [] : ['--map-root-user']),
      '--mount',
      '--propagation',
      'private',
      ...net,
      '--',
      'sleep',
      '86400',
    ],
    { stdio: 'ignore' },
  );
  try {
    const pid = await holderReady(holder, 'user');
    let enter: string[];
    if (plan && newuidmap && newgidmap) {
      await Promise.all([
        tool(newuidmap, [
          String(pid),
          '0',
          String(plan.uid),
          '1',
          '1',
          String(plan.uids.start),
          String(plan.uids.count),
        ]),
        tool(newgidmap, [
          String(pid),
          '0',
          String(plan.gid),
          '1',
          '1',
          String(plan.gids.start),
          String(plan.gids.count),
        ]),
      ]);
      enter = [nsenter, '-t', String(pid), '--user', '--mount', ...net, '--setuid', '0', '--setgid', '0', '--'];
    } else {
      // The user is the namespace's root already (and setgroups is denied there): keep the credentials.
      enter = [nsenter, '-t', String(pid), '--user', '--mount', ...net, '--preserve-credentials', '--'];
    }
    // crun refuses hybrid cgroup hosts; inside a user namespace the cgroup2 mount can only be covered.
    if (hybridCgroups())
      await tool(nsenter, [...enter.slice(1), 'mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', '/sys/fs/cgroup/unified']);
    return { pid, enter, net: opts.net, close: () => holder.kill('SIGKILL') };
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
      else
        reject(
          new RunnerError(
            'IMAGE_INVALID',
            `${cmd.split('/').pop() ?? cmd} ${args.slice(0, 1).join(' ')}… failed (exit ${code}): ${err.trim().slice(0, 400)} — see \`secure-run doctor\`, or run with --userns single`,
          ),
        );
    });
  });
}
