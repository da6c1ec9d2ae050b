/**
 * The default seccomp profile: everything is allowed except system calls a
 * container has no business making and that have a history of kernel escapes
 * (module loading, kexec, keyrings, bpf, perf, userfaultfd, mount APIs, namespace
 * tricks, clock and swap changes). A denylist is weaker than docker's allowlist; it
 * is a floor, not a sandbox of its own, and sits behind the user namespace,
 * no-new-privileges and the small capability set.
 */
const DENIED = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module',
  'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'get_mempolicy', 'init_module', 'ioperm', 'iopl',
  'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie', 'mbind', 'mount', 'mount_setattr',
  'move_mount', 'move_pages', 'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'open_tree', 'perf_event_open',
  'personality', 'pivot_root', 'process_vm_readv', 'process_vm_writev', 'ptrace', 'query_module', 'quotactl',
  'reboot', 'request_key', 'set_mempolicy', 'setns', 'settimeofday', 'stime', 'swapoff', 'swapon', 'sysfs',
  '_sysctl', 'umount', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old',
];

export const DEFAULT_SECCOMP = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  syscalls: [{ names: DENIED, action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
} as const;
