import { spawn, spawnSync } from 'node:child_process';
import { RunnerError } from '../errors.js';
import { findProgram } from '../unpack/confined.js';
import type { RunRequest, RuntimeDriver } from './driver.js';
import { holderReady, hybridCgroups, supervise } from './holder.js';

/**
 * crun and runc, driven the same way. The runtime runs in a private mount namespace
 * held by a small holder process, where the cgroup2 half of a hybrid cgroup
 * hierarchy is unmounted: crun refuses hybrid hosts otherwise, and neither needs
 * cgroups here (no resource limits are set). The runtime is started with a death
 * signal (setpriv --pdeathsig KILL) so that killing secure-run kills the container;
 * SIGINT and SIGTERM are forwarded to it; its state is deleted afterwards.
 */
export function ociRuntime(name: 'crun' | 'runc'): RuntimeDriver {
  const binary = findProgram(name);
  if (!binary) throw new RunnerError('IMAGE_INVALID', `${name} is not installed: apt-get install ${name} (see \`secure-run doctor\`)`);
  const tools = ['unshare', 'nsenter', 'setpriv'].map((t) => [t, findProgram(t)] as const);
  const missing = tools.filter(([, p]) => !p).map(([t]) => t);
  if (missing.length) throw new RunnerError('IMAGE_INVALID', `${missing.join(', ')} missing: apt-get install util-linux`);
  const [unshare, nsenter, setpriv] = tools.map(([, p]) => p as string) as [string, string, string];
  const runtimeArgs = (req: RunRequest) => (name === 'crun'
    ? ['--root', req.stateDir, '--cgroup-manager=disabled', 'run', '--bundle', req.bundle, req.id]
    : ['--root', req.stateDir, 'run', '--bundle', req.bundle, req.id]);
  return {
    name,
    async run(req: RunRequest): Promise<number> {
      const stdio = [req.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit'] as const;
      if (req.userns) {
        // A namespace secure-run prepared (subordinate ids, cgroup2 already covered): run as its root.
        const [cmd, ...enter] = req.userns.enter;
        let clean = false;
        try {
          const status = await supervise(spawn(cmd as string, [...enter, setpriv, '--pdeathsig', 'KILL', '--', binary, ...runtimeArgs(req)], { stdio: [...stdio] }));
          clean = status < 128;
          return status;
        } finally {
          if (!clean) spawnSync(cmd as string, [...enter, binary, '--root', req.stateDir, 'delete', '--force', req.id], { stdio: 'ignore' });
        }
      }
      // As a user, the holder owns a user namespace in which the user is root.
      const userns = req.mode === 'user' ? ['--user', '--map-root-user'] : [];
      const enter = req.mode === 'user' ? ['--user', '--mount', '--preserve-credentials'] : ['--mount'];
      let started = false;
      let clean = false;
      const holder = spawn(setpriv, ['--pdeathsig', 'KILL', '--', unshare, ...userns, '--mount', '--propagation', 'private', '--', 'sleep', '86400'], { stdio: 'ignore' });
      try {
        const pid = await holderReady(holder, 'mnt');
        if (hybridCgroups()) {
          // Root can unmount it; a user namespace can only cover it.
          const hide = req.mode === 'user' ? ['mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', '/sys/fs/cgroup/unified'] : ['umount', '/sys/fs/cgroup/unified'];
          const u = spawnSync(nsenter, ['-t', String(pid), ...enter, '--', ...hide], { stdio: 'ignore' });
          if (u.status !== 0) throw new RunnerError('IMAGE_INVALID', 'cannot hide the cgroup2 mount from the runtime (hybrid cgroups)');
        }
        started = true;
        const child = spawn(nsenter, ['-t', String(pid), ...enter, '--', setpriv, '--pdeathsig', 'KILL', '--', binary, ...runtimeArgs(req)], { stdio: [...stdio] });
        const status = await supervise(child);
        clean = status < 128;
        return status;
      } finally {
        holder.kill('SIGKILL');
        // `run` removes its state when the container exits normally; otherwise make sure.
        if (started && !clean) spawnSync(binary, ['--root', req.stateDir, 'delete', '--force', req.id], { stdio: 'ignore' });
      }
    },
  };
}

