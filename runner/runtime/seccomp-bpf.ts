import { arch, endianness } from 'node:os';
import { isObject } from '../../oci/strict-json.js';
import { RunnerError } from '../errors.js';

/**
 * Compiles secure-run's seccomp profile (runtime-spec config-linux.md: default
 * SCMP_ACT_ALLOW; SCMP_ACT_ERRNO rules by name, each with its errno and optionally
 * SCMP_CMP_EQ / SCMP_CMP_MASKED_EQ conditions on 64-bit arguments, compared one
 * 32-bit word at a time; the rules for one call are or-ed, as libseccomp does) into the classic BPF
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
  clone: 56,
  clone3: 435,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
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
  clone: 120,
  clone3: 435,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
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
  clone: 220,
  clone3: 435,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
};

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const X32_SYSCALL_BIT = 0x40000000;

const LD_W_ABS = 0x20;
const ALU_AND_K = 0x54;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const RET_KILL_PROCESS = 0x80000000;
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARGS = 16;

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Every name a profile may deny must be known for some architecture (a typo must not pass silently). */
const KNOWN = new Set([...Object.keys(X86_64), ...Object.keys(I386), ...Object.keys(AARCH64)]);

/** One condition on a 64-bit argument: (arg & mask) == value. */
export interface ArgCondition {
  readonly index: number;
  readonly mask: bigint;
  readonly value: bigint;
}

/** One deny rule: the call fails with `errno` when every condition holds (no condition: always). */
export interface DenyRule {
  readonly name: string;
  readonly errno: number;
  readonly conditions: readonly ArgCondition[];
}

const U64 = (1n << 64n) - 1n;

/**
 * The deny rules of a profile secure-run can compile (default SCMP_ACT_ALLOW; rules
 * SCMP_ACT_ERRNO by name, each with its own errno, optionally with SCMP_CMP_EQ or
 * SCMP_CMP_MASKED_EQ conditions on arguments); anything else is refused.
 */
export function denyRulesOf(profile: unknown): DenyRule[] {
  const bad = (why: string) =>
    new RunnerError('IMAGE_INVALID', `this seccomp profile cannot be compiled for bwrap: ${why}`);
  if (!isObject(profile) || profile.defaultAction !== 'SCMP_ACT_ALLOW' || !Array.isArray(profile.syscalls))
    throw bad('only a default of SCMP_ACT_ALLOW with deny rules is supported');
  const out: DenyRule[] = [];
  for (const rule of profile.syscalls) {
    if (!isObject(rule) || rule.action !== 'SCMP_ACT_ERRNO' || !Array.isArray(rule.names))
      throw bad('every rule must be SCMP_ACT_ERRNO by name');
    const e = rule.errnoRet ?? 1;
    if (typeof e !== 'number' || !Number.isInteger(e) || e < 1 || e > 4095) throw bad('an errno between 1 and 4095');
    const conditions: ArgCondition[] = [];
    for (const a of rule.args === undefined ? [] : Array.isArray(rule.args) ? rule.args : [null]) {
      if (!isObject(a) || typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5)
        throw bad('an argument condition needs an index from 0 to 5');
      const num = (v: unknown): bigint => {
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
          throw bad('argument values must be whole numbers');
        return BigInt(v);
      };
      if (a.op === 'SCMP_CMP_EQ') conditions.push({ index: a.index, mask: U64, value: num(a.value) });
      else if (a.op === 'SCMP_CMP_MASKED_EQ') {
        const mask = num(a.value);
        const value = num(a.valueTwo ?? 0);
        if ((value & ~mask) !== 0n) throw bad('a masked value with bits outside its mask never matches');
        conditions.push({ index: a.index, mask, value });
      } else
        throw bad(`argument comparison ${JSON.stringify(a.op)} is not supported (SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ)`);
    }
    for (const n of rule.names) {
      if (typeof n !== 'string' || !KNOWN.has(n)) throw bad(`unknown system call ${JSON.stringify(n)}`);
      out.push({ name: n, errno: e, conditions });
    }
  }
  return out;
}

/** The names a profile denies (for tests and messages). */
export function denylistOf(profile: unknown): { names: string[] } {
  return { names: [...new Set(denyRulesOf(profile).map((r) => r.name))] };
}

/** The instructions that return ERRNO when every condition holds, falling through otherwise. */
function ruleCode(rule: DenyRule, little: boolean): Insn[] {
  const tests: Insn[][] = [];
  for (const c of rule.conditions) {
    const base = OFFSET_ARGS + 8 * c.index;
    const words: [number, number, number][] = [
      [little ? base : base + 4, Number(c.mask & 0xffffffffn), Number(c.value & 0xffffffffn)],
      [little ? base + 4 : base, Number(c.mask >> 32n), Number(c.value >> 32n)],
    ];
    for (const [offset, mask, value] of words) {
      if (mask === 0) continue; // (x & 0) == 0 always holds
      const t: Insn[] = [{ code: LD_W_ABS, jt: 0, jf: 0, k: offset }];
      if (mask !== 0xffffffff) t.push({ code: ALU_AND_K, jt: 0, jf: 0, k: mask });
      t.push({ code: JEQ_K, jt: 0, jf: 0, k: value });
      tests.push(t);
    }
  }
  const flat = tests.flat();
  const total = flat.length + 1;
  // Each JEQ that fails jumps past the rule's RET.
  let pos = 0;
  for (const insn of flat) {
    pos++;
    if (insn.code === JEQ_K) insn.jf = total - pos;
  }
  return [...flat, { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | rule.errno }];
}

/** One architecture's section: if arch matches, apply the rules of its calls and allow the rest. */
function section(
  auditArch: number,
  table: Readonly<Record<string, number>>,
  rules: readonly DenyRule[],
  refuseX32: boolean,
): Insn[] {
  const little = endianness() === 'LE';
  const byNr = new Map<number, DenyRule[]>();
  for (const r of rules) {
    const nr = table[r.name];
    if (nr === undefined) continue;
    byNr.set(nr, [...(byNr.get(nr) ?? []), r]);
  }
  const body: Insn[] = [{ code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR }];
  if (refuseX32)
    body.push({ code: JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT }, { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | 1 });
  for (const [nr, list] of [...byNr].sort(([a], [b]) => a - b)) {
    // Unconditional rules first: they decide alone. Conditional ones fall through to ALLOW.
    const ordered = [...list].sort((a, b) => a.conditions.length - b.conditions.length);
    const block = ordered.flatMap((r) => ruleCode(r, little));
    if (ordered.every((r) => r.conditions.length > 0)) block.push({ code: RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    if (block.length > 255) throw new RunnerError('IMAGE_INVALID', 'the seccomp profile is too long to compile');
    body.push({ code: JEQ_K, jt: 0, jf: block.length, k: nr }, ...block);
    // Conditions load arguments into the accumulator: load the number again for the next test.
    if (block.some((i) => i.code === LD_W_ABS)) body.push({ code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR });
  }
  body.push({ code: RET_K, jt: 0, jf: 0, k: RET_ALLOW });
  if (body.length > 255) throw new RunnerError('IMAGE_INVALID', 'the seccomp profile is too long to compile');
  return [{ code: JEQ_K, jt: 0, jf: body.length, k: auditArch }, ...body];
}

export function compileSeccomp(profile: unknown, machine: string = arch()): Buffer {
  const rules = denyRulesOf(profile);
  const sections =
    machine === 'x64'
      ? [section(AUDIT_ARCH_X86_64, X86_64, rules, true), section(AUDIT_ARCH_I386, I386, rules, false)]
      : machine === 'arm64'
        ? [section(AUDIT_ARCH_AARCH64, AARCH64, rules, false)]
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
