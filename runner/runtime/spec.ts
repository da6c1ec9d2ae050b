import { posix } from 'node:path';
import { RunnerError } from '../errors.js';
import type { ImageConfig } from './image-config.js';
import { assertSeccompArch, DEFAULT_SECCOMP } from './seccomp.js';

/**
 * Builds the OCI runtime spec (runtime-spec config.md, config-linux.md) for one run,
 * from the image config and the user's options. Pure: everything it needs about the
 * host (id mappings, rlimits, the init binary's path) is passed in.
 *
 * Rootless defaults: new user, mount, pid, ipc, uts and network namespaces (only
 * loopback); no new privileges; a small capability set; a seccomp profile; masked
 * and read-only kernel paths; rlimits no higher than the host's; an init as pid 1;
 * a read-only root with a tmpfs /tmp unless asked otherwise.
 */
export interface IdMapping {
  readonly containerID: number;
  readonly hostID: number;
  readonly size: number;
}

export interface Volume {
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

export interface Rlimit {
  readonly type: string;
  readonly soft: number;
  readonly hard: number;
}

export interface RunOptions {
  /** Replaces the image's Cmd (and, with `entrypoint`, its Entrypoint). */
  readonly command?: readonly string[] | undefined;
  readonly entrypoint?: string | undefined;
  /** `KEY=VALUE` entries, applied over the image's Env. */
  readonly env: readonly string[];
  readonly workdir?: string | undefined;
  readonly user?: string | undefined;
  readonly volumes: readonly Volume[];
  readonly tty: boolean;
  readonly readOnlyRoot: boolean;
  readonly hostname?: string | undefined;
  /** private (default): a network namespace of its own with loopback only; joined: the one the runtime starts in. */
  readonly network?: 'private' | 'joined' | undefined;
  /** Host files bound read-only over files of the image (for example /etc/resolv.conf with a network). */
  readonly files?: readonly { readonly source: string; readonly destination: string }[] | undefined;
}

export interface HostFacts {
  readonly uidMappings: readonly IdMapping[];
  readonly gidMappings: readonly IdMapping[];
  readonly rlimits: readonly Rlimit[];
  /** Host path of a static init (tini); mounted read-only at INIT_PATH and run as pid 1. */
  readonly initPath: string;
  /** The unpacked image; `rootfs` (next to config.json) when omitted. */
  readonly rootfsPath?: string | undefined;
  /** The container's /etc/passwd and /etc/group, for resolving user names. */
  readonly etcPasswd?: string | undefined;
  readonly etcGroup?: string | undefined;
}

export const INIT_PATH = '/.secure-run/init';
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];
const MASKED = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/interrupts',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  '/sys/fs/selinux',
];
const READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export function buildSpec(image: ImageConfig, opts: RunOptions, host: HostFacts): Record<string, unknown> {
  assertSeccompArch();
  const args = processArgs(image, opts);
  const cwd = opts.workdir ?? image.workingDir;
  if (!posix.isAbsolute(cwd) || cwd.includes('\0'))
    throw new RunnerError('IMAGE_INVALID', `working directory must be an absolute path: ${JSON.stringify(cwd)}`);
  const user = resolveUser(opts.user ?? image.user, host);
  const caps = DEFAULT_CAPABILITIES;
  return {
    ociVersion: '1.0.2',
    root: { path: host.rootfsPath ?? 'rootfs', readonly: opts.readOnlyRoot },
    hostname: opts.hostname ?? 'secure-run',
    process: {
      terminal: opts.tty,
      user,
      // tini: reap zombies (-s), signal the whole group (-g), die with the runtime (-p SIGKILL).
      args: [INIT_PATH, '-s', '-g', '-p', 'SIGKILL', '--', ...args],
      env: mergeEnv(image.env, opts.env),
      cwd: posix.normalize(cwd),
      noNewPrivileges: true,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: host.rlimits.map((r) => ({ type: r.type, soft: Math.min(r.soft, r.hard), hard: r.hard })),
    },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      // `rro`: read-only all the way down, submounts included (a plain bind `ro` is not recursive).
      {
        destination: '/sys',
        type: 'none',
        source: '/sys',
        options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro', 'rro'],
      },
      // A bind's `ro` is not recursive: cover the host's cgroup hierarchy below /sys with an empty read-only tmpfs.
      {
        destination: '/sys/fs/cgroup',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['ro', 'nosuid', 'noexec', 'nodev', 'mode=755', 'size=4k'],
      },
      {
        destination: '/tmp',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', 'size=262144k'],
      },
      { destination: INIT_PATH, type: 'bind', source: host.initPath, options: ['bind', 'ro', 'nosuid', 'nodev'] },
      ...opts.volumes.map(volumeMount),
      ...(opts.files ?? []).map((f) => ({
        destination: f.destination,
        type: 'bind',
        source: f.source,
        options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
      })),
    ],
    linux: {
      uidMappings: host.uidMappings,
      gidMappings: host.gidMappings,
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        ...(opts.network === 'joined' ? [] : [{ type: 'network' }]),
        { type: 'user' },
      ],
      maskedPaths: MASKED,
      readonlyPaths: READONLY,
      seccomp: DEFAULT_SECCOMP,
    },
  };
}

/** Entrypoint ++ Cmd, with the user's overrides (docker run semantics). */
export function processArgs(image: ImageConfig, opts: Pick<RunOptions, 'command' | 'entrypoint'>): string[] {
  const entrypoint =
    opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : [...image.entrypoint];
  // A new entrypoint drops the image's Cmd, as docker does.
  const cmd =
    opts.command !== undefined && opts.command.length > 0
      ? [...opts.command]
      : opts.entrypoint !== undefined
        ? []
        : [...image.cmd];
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new RunnerError('IMAGE_INVALID', 'the image names no command and none was given');
  return args;
}

/** Image Env, then options; later entries replace earlier ones with the same name. PATH gets a default. */
export function mergeEnv(image: readonly string[], overrides: readonly string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [DEFAULT_PATH, ...image, ...overrides]) {
    const eq = e.indexOf('=');
    if (eq <= 0 || e.includes('\0'))
      throw new RunnerError(
        'IMAGE_INVALID',
        `environment entries must be KEY=VALUE: ${JSON.stringify(e.slice(0, 60))}`,
      );
    out.set(e.slice(0, eq), e);
  }
  return [...out.values()];
}

function volumeMount(v: Volume): Record<string, unknown> {
  if (!posix.isAbsolute(v.destination) || posix.normalize(v.destination) === '/' || v.destination.includes('\0')) {
    throw new RunnerError(
      'IMAGE_INVALID',
      `volume destination must be an absolute path below /: ${JSON.stringify(v.destination)}`,
    );
  }
  return {
    destination: posix.normalize(v.destination),
    type: 'bind',
    source: v.source,
    options: ['rbind', 'nosuid', 'nodev', ...(v.readOnly ? ['ro', 'rro'] : ['rw'])],
  };
}

/**
 * `uid`, `uid:gid`, `name`, `name:group` (image-spec config.md). Names are looked up
 * in the container's own /etc/passwd and /etc/group; an unknown name is an error.
 */
export function resolveUser(
  spec: string,
  host: Pick<HostFacts, 'etcPasswd' | 'etcGroup'>,
): { uid: number; gid: number; additionalGids?: number[] } {
  if (spec === '') return { uid: 0, gid: 0 };
  const [userPart = '', groupPart] = spec.split(':', 2);
  const passwd = table(host.etcPasswd);
  const groups = table(host.etcGroup);
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const primary = passwd.find((p) => p[2] === userPart)?.[3];
    gid = primary !== undefined ? Number(primary) : undefined;
  } else {
    const entry = passwd.find((p) => p[0] === userPart);
    if (!entry)
      throw new RunnerError('IMAGE_INVALID', `user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((e) => e[0] === groupPart);
      if (!g)
        throw new RunnerError('IMAGE_INVALID', `group ${JSON.stringify(groupPart)} is not in the image's /etc/group`);
      gid = Number(g[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid ?? 0) || uid < 0 || (gid ?? 0) < 0 || uid > 0xfffffffe) {
    throw new RunnerError('IMAGE_INVALID', `user ${JSON.stringify(spec)} does not resolve to valid ids`);
  }
  return { uid, gid: gid ?? 0 };
}

function table(text: string | undefined): string[][] {
  return (text ?? '')
    .split('\n')
    .slice(0, 10_000)
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}
