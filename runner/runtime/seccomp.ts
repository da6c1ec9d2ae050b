import { RunnerError } from '../errors.js';

/**
 * The default seccomp profile: everything is allowed except system calls a
 * container has no business making and that have a history of kernel escapes
 * (module loading, kexec, keyrings, bpf, perf, userfaultfd, io_uring, mount APIs,
 * namespace calls, clock and swap changes). New namespaces are refused however they
 * are asked for: unshare and setns fail, clone fails with any CLONE_NEW* flag (a
 * new user namespace would give the child every capability in it, and with a
 * network namespace the netfilter attack surface), and clone3, whose flags sit in a
 * struct a filter cannot read, fails with ENOSYS so that the C library falls back to
 * clone, as under Docker's profile. A denylist is weaker than docker's allowlist; it
 * is a floor, not a sandbox of its own, and sits behind the user namespace,
 * no-new-privileges and the small capability set.
 */
const DENIED = [
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_settime',
  'create_module',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'get_kernel_syms',
  'get_mempolicy',
  'init_module',
  'ioperm',
  'iopl',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mbind',
  'mount',
  'mount_setattr',
  'move_mount',
  'move_pages',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'personality',
  'pivot_root',
  'process_vm_readv',
  'process_vm_writev',
  'ptrace',
  'query_module',
  'quotactl',
  'reboot',
  'request_key',
  'set_mempolicy',
  'setns',
  'settimeofday',
  'stime',
  'swapoff',
  'swapon',
  'sysfs',
  '_sysctl',
  'umount',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vm86',
  'vm86old',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
];

/** clone(2) flags that make new namespaces (CLONE_NEWTIME is clone3/unshare only: 0x80 is CSIGNAL for clone). */
export const CLONE_NAMESPACE_FLAGS = {
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
} as const;

const ENOSYS = 38;

export const DEFAULT_SECCOMP = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  syscalls: [
    { names: DENIED, action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    // One rule per flag: (flags & FLAG) == FLAG refuses the call (rules for one call are or-ed).
    ...Object.values(CLONE_NAMESPACE_FLAGS).map((flag) => ({
      names: ['clone'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
      args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
    })),
  ],
} as const;

/**
 * The clone rules test argument 0, where clone's flags are on the architectures the
 * profile lists; on s390 they are argument 1. Elsewhere the profile would not hold.
 */
export function assertSeccompArch(arch: string = process.arch): void {
  if (!['x64', 'ia32', 'arm64', 'arm'].includes(arch))
    throw new RunnerError(
      'PLATFORM_UNAVAILABLE',
      `secure-run's seccomp profile is written for x86 and arm; it does not run containers on ${arch}`,
    );
}
