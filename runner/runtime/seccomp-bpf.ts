import { arch, endianness } from 'node:os';
import { isObject } from '../../oci/strict-json.js';
import { RunnerError } from '../errors.js';

/**
 * Compiles secure-run's seccomp profile (runtime-spec config-linux.md: default
 * SCMP_ACT_ALLOW, one or more SCMP_ACT_ERRNO rules by name) into the classic BPF
 * program the kernel takes, for runtimes that load only compiled filters (bwrap's
 * `--seccomp FD`). Anything else in a profile is refused, never dropped.
 *
 * The program checks the architecture first: the host's native one and, on x86_64,
 * 32-bit i386 calls, each against its own system call numbers; x32 calls (numbers
 * with bit 30 set) are refused outright; any other architecture kills the process,
 * as libseccomp does for an architecture a profile does not name.
 */

/** System call numbers (from the kernel's uapi headers) of the names a profile may deny. */
const X86_64: Readonly<Record<string, number>> = {
  acct: 163,
  add_key: 248,
  bpf: 321,
  clock_adjtime: 305,
  clock_settime: 227,
  create_module: 174,
  delete_module: 176,
  finit_module: 313,
  fsconfig: 431,
  fsmount: 432,
  fsopen: 430,
  fspick: 433,
  get_kernel_syms: 177,
  get_mempolicy: 239,
  init_module: 175,
  ioperm: 173,
  iopl: 172,
  kcmp: 312,
  kexec_file_load: 320,
  kexec_load: 246,
  keyctl: 250,
  lookup_dcookie: 212,
  mbind: 237,
  mount: 165,
  mount_setattr: 442,
  move_mount: 429,
  move_pages: 279,
  name_to_handle_at: 303,
  nfsservctl: 180,
  open_by_handle_at: 304,
  open_tree: 428,
  perf_event_open: 298,
  personality: 135,
  pivot_root: 155,
  process_vm_readv: 310,
  process_vm_writev: 311,
  ptrace: 101,
  query_module: 178,
  quotactl: 179,
  reboot: 169,
  request_key: 249,
  set_mempolicy: 238,
  setns: 308,
  settimeofday: 164,
  swapoff: 168,
  swapon: 167,
  sysfs: 139,
  _sysctl: 156,
  umount2: 166,
  unshare: 272,
  uselib: 134,
  userfaultfd: 323,
  ustat: 136,
};

const I386: Readonly<Record<string, number>> = {
  acct: 51,
  add_key: 286,
  bpf: 357,
  clock_adjtime: 343,
  clock_settime: 264,
  create_module: 127,
  delete_module: 129,
  finit_module: 350,
  fsconfig: 431,
  fsmount: 432,
  fsopen: 430,
  fspick: 433,
  get_kernel_syms: 130,
  get_mempolicy: 275,
  init_module: 128,
  ioperm: 101,
  iopl: 110,
  kcmp: 349,
  kexec_load: 283,
  keyctl: 288,
  lookup_dcookie: 253,
  mbind: 274,
  mount: 21,
  mount_setattr: 442,
  move_mount: 429,
  move_pages: 317,
  name_to_handle_at: 341,
  nfsservctl: 169,
  open_by_handle_at: 342,
  open_tree: 428,
  perf_event_open: 336,
  personality: 136,
  pivot_root: 217,
  process_vm_readv: 347,
  process_vm_writev: 348,
  ptrace: 26,
  query_module: 167,
  quotactl: 131,
  reboot: 88,
  request_key: 287,
  set_mempolicy: 276,
  setns: 346,
  settimeofday: 79,
  stime: 25,
  swapoff: 115,
  swapon: 87,
  sysfs: 135,
  _sysctl: 149,
  umount: 22,
  umount2: 52,
  unshare: 310,
  uselib: 86,
  userfaultfd: 374,
  ustat: 62,
  vm86: 166,
  vm86old: 113,
  clock_settime64: 404,
  clock_adjtime64: 405,
};

const AARCH64: Readonly<Record<string, number>> = {
  acct: 89,
  add_key: 217,
  bpf: 280,
  clock_adjtime: 266,
  clock_settime: 112,
  delete_module: 106,
  finit_module: 273,
  fsconfig: 431,
  fsmount: 432,
  fsopen: 430,
  fspick: 433,
  get_mempolicy: 236,
  init_module: 105,
  kcmp: 272,
  kexec_file_load: 294,
  kexec_load: 104,
  keyctl: 219,
  lookup_dcookie: 18,
  mbind: 235,
  mount: 40,
  mount_setattr: 442,
  move_mount: 429,
  move_pages: 239,
  name_to_handle_at: 264,
  nfsservctl: 42,
  open_by_handle_at: 265,
  open_tree: 428,
  perf_event_open: 241,
  personality: 92,
  pivot_root: 41,
  process_vm_readv: 270,
  process_vm_writev: 271,
  ptrace: 117,
  quotactl: 60,
  reboot: 142,
  request_key: 218,
  set_mempolicy: 237,
  setns: 268,
  settimeofday: 170,
  swapoff: 225,
  swapon: 224,
  umount2: 39,
  unshare: 97,
  userfaultfd: 282,
};

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const X32_SYSCALL_BIT = 0x40000000;

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const RET_KILL_PROCESS = 0x80000000;
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Every name a profile may deny must be known for some architecture (a typo must not pass silently). */
const KNOWN = new Set([...Object.keys(X86_64), ...Object.keys(I386), ...Object.keys(AARCH64)]);

/** The denied names and errno of a profile secure-run can compile; anything else is refused. */
export function denylistOf(profile: unknown): { names: string[]; errno: number } {
  const bad = (why: string) =>
    new RunnerError('IMAGE_INVALID', `this seccomp profile cannot be compiled for bwrap: ${why}`);
  if (!isObject(profile) || profile.defaultAction !== 'SCMP_ACT_ALLOW' || !Array.isArray(profile.syscalls))
    throw bad('only a default of SCMP_ACT_ALLOW with deny rules is supported');
  const names: string[] = [];
  let errno: number | undefined;
  for (const rule of profile.syscalls) {
    if (!isObject(rule) || rule.action !== 'SCMP_ACT_ERRNO' || !Array.isArray(rule.names) || rule.args !== undefined)
      throw bad('every rule must be SCMP_ACT_ERRNO by name, without argument filters');
    const e = rule.errnoRet ?? 1;
    if (typeof e !== 'number' || !Number.isInteger(e) || e < 1 || e > 4095 || (errno !== undefined && e !== errno))
      throw bad('one errno between 1 and 4095 for every rule');
    errno = e;
    for (const n of rule.names) {
      if (typeof n !== 'string' || !KNOWN.has(n)) throw bad(`unknown system call ${JSON.stringify(n)}`);
      names.push(n);
    }
  }
  return { names, errno: errno ?? 1 };
}

/** One architecture's section: if arch matches, deny the listed numbers and allow the rest. */
function section(
  auditArch: number,
  table: Readonly<Record<string, number>>,
  names: readonly string[],
  errno: number,
  refuseX32: boolean,
): Insn[] {
  const nrs = [...new Set(names.map((n) => table[n]).filter((n): n is number => n !== undefined))].sort(
    (a, b) => a - b,
  );
  const body: Insn[] = [{ code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR }];
  // Each test jumps forward to the ERRNO return that ends the section.
  const tests = nrs.length + (refuseX32 ? 1 : 0);
  let i = 0;
  if (refuseX32) body.push({ code: JGE_K, jt: tests - ++i + 1, jf: 0, k: X32_SYSCALL_BIT });
  for (const nr of nrs) body.push({ code: JEQ_K, jt: tests - ++i + 1, jf: 0, k: nr });
  body.push({ code: RET_K, jt: 0, jf: 0, k: RET_ALLOW }, { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | errno });
  if (body.length > 255) throw new RunnerError('IMAGE_INVALID', 'the seccomp profile is too long to compile');
  return [{ code: JEQ_K, jt: 0, jf: body.length, k: auditArch }, ...body];
}

export function compileSeccomp(profile: unknown, machine: string = arch()): Buffer {
  const { names, errno } = denylistOf(profile);
  const sections =
    machine === 'x64'
      ? [section(AUDIT_ARCH_X86_64, X86_64, names, errno, true), section(AUDIT_ARCH_I386, I386, names, errno, false)]
      : machine === 'arm64'
        ? [section(AUDIT_ARCH_AARCH64, AARCH64, names, errno, false)]
        : undefined;
  if (!sections) throw new RunnerError('IMAGE_INVALID', `no seccomp system call table for ${machine}`);
  const program: Insn[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_ARCH },
    ...sections.flat(),
    { code: RET_K, jt: 0, jf: 0, k: RET_KILL_PROCESS },
  ];
  // struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } in the host's byte order.
  const out = Buffer.alloc(program.length * 8);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const le = endianness() === 'LE';
  program.forEach((p, n) => {
    view.setUint16(n * 8, p.code, le);
    view.setUint8(n * 8 + 2, p.jt);
    view.setUint8(n * 8 + 3, p.jf);
    view.setUint32(n * 8 + 4, p.k >>> 0, le);
  });
  return out;
}
