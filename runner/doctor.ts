import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { blockedAncestor, ROOT_DATA_DIR, runnerPaths } from './settings.js';
import { findProgram } from './unpack/confined.js';

/**
 * `secure-run doctor`: what this machine offers for rootless containers, and how to
 * fix what is missing. Reads only; changes nothing.
 */
export interface Finding {
  readonly check: string;
  readonly status: 'ok' | 'warn' | 'fail';
  readonly detail: string;
  readonly fix?: string;
}

export interface DoctorInput {
  readonly uid: number;
  readonly user: string;
  readonly read: (path: string) => string | undefined;
  readonly which: (program: string) => string | undefined;
  readonly canReadWrite: (path: string) => boolean;
  /** secure-run's data directory (images, rootfs trees, bundles) and a way to read modes. */
  readonly dataDir: string;
  readonly mode: (path: string) => number | undefined;
}

export function defaultDoctorInput(): DoctorInput {
  return {
    uid: process.getuid?.() ?? 0,
    user: userInfo().username,
    read: (p) => {
      try {
        return readFileSync(p, 'utf8');
      } catch {
        return undefined;
      }
    },
    which: (p) => findProgram(p, `${process.env.PATH ?? ''}:/usr/bin:/usr/sbin:/bin:/sbin`),
    dataDir: runnerPaths().dataDir,
    mode: (p) => {
      try {
        return statSync(p).mode;
      } catch {
        return undefined;
      }
    },
    canReadWrite: (p) => {
      try {
        accessSync(p, constants.R_OK | constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
  };
}

export function diagnose(i: DoctorInput): Finding[] {
  const out: Finding[] = [];
  const maxNs = Number(i.read('/proc/sys/user/max_user_namespaces')?.trim() ?? 'NaN');
  const clone = i.read('/proc/sys/kernel/unprivileged_userns_clone')?.trim();
  if (maxNs === 0 || clone === '0') {
    out.push({
      check: 'user namespaces',
      status: 'fail',
      detail: maxNs === 0 ? 'user.max_user_namespaces is 0' : 'kernel.unprivileged_userns_clone is 0',
      fix: 'sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1 (and persist it in /etc/sysctl.d/)',
    });
  } else {
    out.push({
      check: 'user namespaces',
      status: 'ok',
      detail: Number.isFinite(maxNs) ? `up to ${maxNs}` : 'available',
    });
  }
  const apparmor = i.read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')?.trim();
  if (apparmor === '1') {
    out.push({
      check: 'AppArmor user-namespace restriction',
      status: i.uid === 0 ? 'ok' : 'fail',
      detail:
        'kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 23.10+): unprivileged programs may not create user namespaces',
      fix: 'give bwrap, crun, runc and unshare an AppArmor profile with "userns," (Ubuntu ships some in /etc/apparmor.d), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
    });
  } else {
    out.push({
      check: 'AppArmor user-namespace restriction',
      status: 'ok',
      detail: apparmor === undefined ? 'not present' : 'off',
    });
  }
  const sub = (file: string) =>
    (i.read(file) ?? '').split('\n').find((l) => l.startsWith(`${i.user}:`) || l.startsWith(`${i.uid}:`));
  if (i.uid === 0) {
    out.push({
      check: 'subordinate ids',
      status: 'ok',
      detail: 'root: containers use the dedicated range from 0x70000000',
    });
  } else if (sub('/etc/subuid') && sub('/etc/subgid')) {
    const helpers = i.which('newuidmap') && i.which('newgidmap');
    out.push(
      helpers
        ? {
            check: 'subordinate ids',
            status: 'ok',
            detail: `${i.user} has ${sub('/etc/subuid')}: containers get that range (image users and file owners are kept)`,
          }
        : {
            check: 'subordinate ids',
            status: 'warn',
            detail: `${i.user} has a range, but newuidmap/newgidmap are missing: run with --userns single until they are installed`,
            fix: 'apt-get install uidmap',
          },
    );
  } else {
    out.push({
      check: 'subordinate ids',
      status: 'warn',
      detail: `no /etc/subuid or /etc/subgid range for ${i.user}: each container has one id, and images that run as a non-root user run as the container's root`,
      fix: `usermod --add-subuids 200000-265535 --add-subgids 200000-265535 ${i.user}`,
    });
  }
  for (const [program, pkg, needed] of [
    ['crun', 'crun', false],
    ['runc', 'runc', false],
    ['bwrap', 'bubblewrap', true],
    ['tini-static', 'tini', true],
    ['unshare', 'util-linux', true],
    ['nsenter', 'util-linux', true],
    ['setpriv', 'util-linux', true],
  ] as const) {
    const path = i.which(program);
    out.push(
      path
        ? { check: program, status: 'ok', detail: path }
        : { check: program, status: needed ? 'fail' : 'warn', detail: 'not installed', fix: `apt-get install ${pkg}` },
    );
  }
  if (!i.which('slirp4netns'))
    out.push({
      check: 'slirp4netns',
      status: 'warn',
      detail: 'not installed: --network slirp is unavailable',
      fix: 'apt-get install slirp4netns',
    });
  else if (i.uid !== 0 && !i.canReadWrite('/dev/net/tun'))
    out.push({
      check: 'slirp4netns',
      status: 'warn',
      detail: '/dev/net/tun is not open to you: --network slirp will fail',
      fix: 'chmod 0666 /dev/net/tun (the usual mode; udev: KERNEL=="tun", MODE="0666")',
    });
  else out.push({ check: 'slirp4netns', status: 'ok', detail: `${i.which('slirp4netns') ?? ''} (--network slirp)` });
  if (!i.which('crun') && !i.which('runc'))
    out.push({
      check: 'OCI runtime',
      status: 'fail',
      detail: 'neither crun nor runc is installed',
      fix: 'apt-get install crun',
    });
  if (i.uid === 0) {
    // Root's containers run as other host ids: they must be able to traverse to their rootfs.
    const blocked = blockedAncestor(i.dataDir, i.mode);
    out.push(
      blocked === undefined
        ? { check: 'data directory', status: 'ok', detail: `${i.dataDir} is reachable by the containers' ids` }
        : {
            check: 'data directory',
            status: 'fail',
            detail: `${blocked} (mode ${((i.mode(blocked) ?? 0) & 0o777).toString(8)}) lets no other user through, so containers cannot reach ${i.dataDir}`,
            fix: `unset XDG_DATA_HOME (root's default is ${ROOT_DATA_DIR}), or chmod o+x ${blocked}`,
          },
    );
  }
  const mountinfo = i.read('/proc/self/mountinfo') ?? '';
  const v2 = mountinfo.split('\n').some((l) => / \/sys\/fs\/cgroup - cgroup2 /.test(l));
  const hybrid = mountinfo.split('\n').some((l) => l.includes(' /sys/fs/cgroup/unified ') && l.includes(' - cgroup2 '));
  out.push({
    check: 'cgroups',
    status: 'ok',
    detail: v2
      ? 'cgroup v2 (unified)'
      : hybrid
        ? 'hybrid v1 + v2: the cgroup2 mount is hidden from the runtime in its own mount namespace (no resource limits are set)'
        : 'cgroup v1: no resource limits are set',
  });
  return out;
}

export function renderFindings(findings: readonly Finding[]): string[] {
  return findings.flatMap((f) => [
    `${f.status === 'ok' ? 'ok  ' : f.status === 'warn' ? 'WARN' : 'FAIL'}  ${f.check}: ${f.detail}`,
    ...(f.fix && f.status !== 'ok' ? [`      fix: ${f.fix}`] : []),
  ]);
}
