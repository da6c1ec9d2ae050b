import { spawn, spawnSync } from 'node:child_process';
import { RunnerError } from '../errors.js';
import { findProgram } from '../unpack/confined.js';
import type { RunRequest, RuntimeDriver } from './driver.js';
import { holderReady, hybridCgroups, supervise } from './holder.js';

/**
 * crun and runc, driven the same way. An unprivileged user's runtime runs inside the
 * user namespace secure-run prepared (see userns.ts). Root's runs in a private mount
 * namespace held by a small holder process, where the cgroup2 half of a hybrid
 * cgroup hierarchy is unmounted: crun refuses hybrid hosts otherwise, and neither
 * needs cgroups here (no resource limits are set). The runtime is started with a
 * death signal (setpriv --pdeathsig KILL) so that killing secure-run kills the
 * container; SIGINT and SIGTERM are forwarded to it; its state is deleted after an
 * abnormal exit.
 */
export function ociRuntime(name: 'crun' | 'runc'): RuntimeDriver {
  const binary = findProgram(name);
  if (!binary)
    throw new RunnerError(
      'IMAGE_INVALID',
      `${name} is not installed: apt-get install ${name} (see \`secure-run doctor\`)`,
    );
  const tools = ['unshare', 'nsenter', 'setpriv'].map((t) => [t, findProgram(t)] as const);
  const missing = tools.filter(([, p]) => !p).map(([t]) => t);
  if (missing.length)
    throw new RunnerError('IMAGE_INVALID', `${missing.join(', ')} missing: apt-get install util-linux`);
  const [unshare, nsenter, setpriv] = tools.map(([, p]) => p as string) as [string, string, string];
  const runtimeArgs = (req: RunRequest) =>
    name === 'crun'
      ? ['--root', req.stateDir, '--cgroup-manager=disabled', 'run', '--bundle', req.bundle, req.id]
      : ['--root', req.stateDir, 'run', '--bundle', req.bundle, req.id];
  return {
    name,
    async run(req: RunRequest): Promise<number> {
      const stdio = [req.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit'] as const;
      let enter: string[];
      let holder: ReturnType<typeof spawn> | undefined;
      let clean = false;
      try {
        if (req.userns) {
          enter = [...req.userns.enter];
        } else {
          holder = spawn(
            setpriv,
            ['--pdeathsig', 'KILL', '--', unshare, '--mount', '--propagation', 'private', '--', 'sleep', '86400'],
            { stdio: 'ignore' },
          );
          const pid = await holderReady(holder, 'mnt');
          enter = [nsenter, '-t', String(pid), '--mount', ...(req.netns ? [`--net=${req.netns}`] : []), '--'];
          if (hybridCgroups()) {
            const u = spawnSync(nsenter, ['-t', String(pid), '--mount', '--', 'umount', '/sys/fs/cgroup/unified'], {
              stdio: 'ignore',
            });
            if (u.status !== 0)
              throw new RunnerError('IMAGE_INVALID', 'cannot hide the cgroup2 mount from the runtime (hybrid cgroups)');
          }
        }
        const [cmd, ...prefix] = enter;
        try {
          const status = await supervise(
            spawn(cmd as string, [...prefix, setpriv, '--pdeathsig', 'KILL', '--', binary, ...runtimeArgs(req)], {
              stdio: [...stdio],
            }),
          );
          clean = status < 128;
          return status;
        } finally {
          // `run` removes its state when the container exits normally; otherwise make sure.
          if (!clean)
            spawnSync(cmd as string, [...prefix, binary, '--root', req.stateDir, 'delete', '--force', req.id], {
              stdio: 'ignore',
            });
        }
      } finally {
        holder?.kill('SIGKILL');
      }
    },
  };
}
