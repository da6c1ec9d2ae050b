import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import { RunnerError } from '../errors.js';
import { findProgram } from '../unpack/confined.js';
import type { RunRequest, RuntimeDriver } from './driver.js';
import { holderReady, supervise } from './holder.js';
import { compileSeccomp } from './seccomp-bpf.js';

/**
 * bubblewrap as a runtime: the OCI spec secure-run built is translated into bwrap
 * arguments (root, mounts, namespaces, environment, working directory, user,
 * capabilities, masked and read-only paths). bwrap always sets no-new-privileges.
 *
 * The seccomp profile is compiled to BPF here and handed to bwrap on a pipe
 * (`--seccomp 3`). Not carried over: rlimits (the container inherits secure-run's, which are the ceiling anyway); the
 * requested user is the one id mapped in bwrap's own user namespace.
 *
 * Run by real root, bwrap would be real root: in root mode it runs inside a user
 * namespace held for it whose id maps secure-run writes itself (0 → the dedicated
 * range), entered as that namespace's root.
 */
export function bwrapRuntime(): RuntimeDriver {
  const bwrap = findProgram('bwrap');
  const unshare = findProgram('unshare');
  const nsenter = findProgram('nsenter');
  const setpriv = findProgram('setpriv');
  if (!bwrap || !unshare || !nsenter || !setpriv)
    throw new RunnerError(
      'IMAGE_INVALID',
      'bwrap needs bubblewrap and util-linux: apt-get install bubblewrap util-linux',
    );
  return {
    name: 'bwrap',
    async run(req: RunRequest): Promise<number> {
      const spec = parseStrictJson(readFileSync(`${req.bundle}/config.json`), { maxDepth: 16 });
      const args = translate(spec);
      const linux = isObject(spec) && isObject(spec.linux) ? spec.linux : {};
      const filter = linux.seccomp !== undefined ? compileSeccomp(linux.seccomp) : undefined;
      const stdio = [req.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit', 'pipe'] as const;
      const start = (argv: readonly string[]) => {
        const [cmd, ...rest] = argv;
        const child = spawn(cmd as string, rest, { stdio: [...stdio] });
        const pipe = child.stdio[3] as Writable;
        pipe.on('error', () => undefined);
        pipe.end(filter ?? Buffer.alloc(0));
        return supervise(child);
      };
      if (req.userns) return start([...req.userns.enter, bwrap, ...args]);
      // Real root: a user namespace of bwrap's own whose maps secure-run writes (0 → the dedicated range).
      const net = req.netns ? [nsenter, `--net=${req.netns}`, '--'] : [];
      const holder = spawn(
        setpriv,
        [
          '--pdeathsig',
          'KILL',
          '--',
          ...net,
          unshare,
          '--user',
          '--mount',
          '--propagation',
          'private',
          '--',
          'sleep',
          '86400',
        ],
        { stdio: 'ignore' },
      );
      try {
        const pid = await holderReady(holder, 'user');
        writeFileSync(`/proc/${pid}/uid_map`, mapText(linux.uidMappings));
        writeFileSync(`/proc/${pid}/gid_map`, mapText(linux.gidMappings));
        return await start([
          nsenter,
          '-t',
          String(pid),
          '--user',
          '--mount',
          ...(req.netns ? ['--net'] : []),
          '--setuid',
          '0',
          '--setgid',
          '0',
          '--',
          bwrap,
          ...args,
        ]);
      } finally {
        holder.kill('SIGKILL');
      }
    },
  };
}

function mapText(m: unknown): string {
  if (!Array.isArray(m) || m.length === 0) throw new RunnerError('IMAGE_INVALID', 'the spec has no id mappings');
  return m
    .map((e) => {
      if (!isObject(e)) throw new RunnerError('IMAGE_INVALID', 'bad id mapping');
      return `${Number(e.containerID)} ${Number(e.hostID)} ${Number(e.size)}`;
    })
    .join('\n');
}

/**
 * OCI spec → bwrap argv (only the parts of the spec secure-run writes). bwrap runs as
 * the root of a user namespace made for it; the requested user, when not 0, is the
 * one id of a user namespace of bwrap's own. Without a network namespace in the spec
 * the container shares the one bwrap starts in.
 */
export function translate(spec: unknown): string[] {
  if (!isObject(spec) || !isObject(spec.root) || !isObject(spec.process) || !Array.isArray(spec.mounts))
    throw new RunnerError('IMAGE_INVALID', 'not a runtime spec');
  const root = String(spec.root.path);
  const p = spec.process;
  if (p.terminal === true)
    throw new RunnerError(
      'IMAGE_INVALID',
      'bwrap cannot give the container a terminal (-t): use --runtime crun or runc for that',
    );
  const user = isObject(p.user) ? p.user : { uid: 0, gid: 0 };
  const linux = isObject(spec.linux) ? spec.linux : {};
  const namespaces = Array.isArray(linux.namespaces)
    ? linux.namespaces.map((n) => (isObject(n) ? n.type : undefined))
    : [];
  const out = [
    '--die-with-parent',
    '--new-session',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    ...(namespaces.includes('network') ? ['--unshare-net'] : []),
    '--unshare-cgroup-try',
  ];
  if (Number(user.uid) !== 0 || Number(user.gid) !== 0)
    out.push('--unshare-user', '--uid', String(user.uid), '--gid', String(user.gid));
  out.push(spec.root.readonly === true ? '--ro-bind' : '--bind', root, '/');
  for (const m of spec.mounts) {
    if (!isObject(m)) continue;
    const dest = String(m.destination);
    const opts = Array.isArray(m.options) ? m.options.map(String) : [];
    if (m.type === 'proc') out.push('--proc', dest);
    else if (dest === '/dev' && m.type === 'tmpfs') out.push('--dev', dest);
    else if (dest === '/dev/pts' || dest === '/dev/shm')
      continue; // part of --dev
    else if (m.type === 'mqueue') out.push('--mqueue', dest);
    else if (m.type === 'tmpfs') out.push('--tmpfs', dest);
    if (m.type === 'tmpfs' && opts.includes('ro')) out.push('--remount-ro', dest);
    else if (m.type === 'bind' || m.type === 'none')
      out.push(opts.includes('ro') || opts.includes('rro') ? '--ro-bind' : '--bind', String(m.source), dest);
  }
  for (const path of Array.isArray(linux.maskedPaths) ? linux.maskedPaths.map(String) : []) {
    if (!existsSync(path)) continue;
    if (statSync(path).isDirectory()) out.push('--tmpfs', path);
    else out.push('--ro-bind-try', '/dev/null', path);
  }
  for (const path of Array.isArray(linux.readonlyPaths) ? linux.readonlyPaths.map(String) : [])
    out.push('--ro-bind-try', path, path);
  if (typeof spec.hostname === 'string') out.push('--hostname', spec.hostname);
  // The compiled filter arrives on fd 3 (see run).
  if (linux.seccomp !== undefined) out.push('--seccomp', '3');
  out.push('--clearenv');
  for (const e of Array.isArray(p.env) ? p.env.map(String) : []) {
    const eq = e.indexOf('=');
    if (eq > 0) out.push('--setenv', e.slice(0, eq), e.slice(eq + 1));
  }
  out.push('--chdir', String(p.cwd ?? '/'), '--cap-drop', 'ALL');
  const caps =
    isObject(p.capabilities) && Array.isArray(p.capabilities.bounding) ? p.capabilities.bounding.map(String) : [];
  for (const c of caps) out.push('--cap-add', c);
  const args = Array.isArray(p.args) ? p.args.map(String) : [];
  if (args.length === 0) throw new RunnerError('IMAGE_INVALID', 'the spec has no process arguments');
  return [...out, '--', ...args];
}
