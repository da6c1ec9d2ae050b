import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunnerError } from '../../../runner/errors.js';
import { assertSeccompArch, DEFAULT_SECCOMP } from '../../../runner/runtime/seccomp.js';
import { compileSeccomp, denylistOf } from '../../../runner/runtime/seccomp-bpf.js';

/** A classic-BPF interpreter for the few instructions the compiler emits, over struct seccomp_data (little-endian). */
function runFilter(program: Buffer, nr: number, auditArch: number, args: readonly bigint[] = []): number {
  let acc = 0;
  let pc = 0;
  const load = (k: number): number => {
    if (k === 0) return nr >>> 0;
    if (k === 4) return auditArch >>> 0;
    if (k >= 16 && k < 64 && k % 4 === 0) {
      const a = args[Math.floor((k - 16) / 8)] ?? 0n;
      return Number((k % 8 === 0 ? a : a >> 32n) & 0xffffffffn);
    }
    return assert.fail(`load at ${k}`);
  };
  for (let steps = 0; steps < 10_000; steps++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    if (code === 0x20) acc = load(k);
    else if (code === 0x54) acc = (acc & k) >>> 0;
    else if (code === 0x15) pc += acc === k ? jt : jf;
    else if (code === 0x35) pc += acc >= k ? jt : jf;
    else if (code === 0x06) return k;
    else assert.fail(`unexpected instruction ${code}`);
    assert.ok(pc * 8 < program.length, 'jumps stay inside the program');
  }
  return assert.fail('no return');
}

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const X86_64 = 0xc000003e;
const I386 = 0x40000003;
const AARCH64 = 0xc00000b7;

test('the compiled default profile denies listed calls per architecture and allows the rest', () => {
  const x64 = compileSeccomp(DEFAULT_SECCOMP, 'x64');
  assert.equal(runFilter(x64, 272, X86_64), EPERM, 'unshare on x86_64');
  assert.equal(runFilter(x64, 165, X86_64), EPERM, 'mount on x86_64');
  assert.equal(runFilter(x64, 101, X86_64), EPERM, 'ptrace on x86_64');
  assert.equal(runFilter(x64, 0, X86_64), ALLOW, 'read');
  assert.equal(runFilter(x64, 59, X86_64), ALLOW, 'execve');
  assert.equal(runFilter(x64, 310, I386), EPERM, 'unshare on i386');
  assert.equal(runFilter(x64, 272, I386), ALLOW, 'an i386 call with the x86_64 number of unshare is another call');
  assert.equal(runFilter(x64, 0x40000000 + 1, X86_64), EPERM, 'x32 calls are refused');
  assert.equal(runFilter(x64, 0, AARCH64) >>> 0, 0x80000000, 'a foreign architecture is killed');
  const arm = compileSeccomp(DEFAULT_SECCOMP, 'arm64');
  assert.equal(runFilter(arm, 97, AARCH64), EPERM, 'unshare on aarch64');
  assert.equal(runFilter(arm, 63, AARCH64), ALLOW, 'read on aarch64');
});

test('every denied name of the default profile has a number on x86_64', () => {
  const x64 = compileSeccomp(DEFAULT_SECCOMP, 'x64');
  // ld arch, per section: jeq arch, ld nr, tests, two returns; final kill.
  const names = denylistOf(DEFAULT_SECCOMP).names.length;
  assert.ok(x64.length / 8 > names, 'one test per known call');
});

test('profiles the compiler cannot express are refused, not weakened', () => {
  const refused = (p: unknown) =>
    assert.throws(
      () => compileSeccomp(p, 'x64'),
      (e: unknown) => e instanceof RunnerError && e.code === 'IMAGE_INVALID',
    );
  refused({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] });
  refused({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_LOG' }] });
  refused({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_LT' }] }],
  });
  refused({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ERRNO', args: [{ index: 7, value: 1, op: 'SCMP_CMP_EQ' }] }],
  });
  refused({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount2'], action: 'SCMP_ACT_ERRNO' }] });
  assert.throws(() => compileSeccomp(DEFAULT_SECCOMP, 'riscv64'), RunnerError);
});

const SIGCHLD = 17n;
const ENOSYS = 0x00050000 + 38;

test('clone with any CLONE_NEW* flag is denied, plain clone allowed; clone3 is ENOSYS; io_uring is denied', () => {
  const x64 = compileSeccomp(DEFAULT_SECCOMP, 'x64');
  const arm = compileSeccomp(DEFAULT_SECCOMP, 'arm64');
  for (const [program, archNr, clone] of [
    [x64, X86_64, 56],
    [x64, I386, 120],
    [arm, AARCH64, 220],
  ] as const) {
    assert.equal(runFilter(program, clone, archNr, [SIGCHLD]), ALLOW, 'fork-like clone');
    assert.equal(
      runFilter(program, clone, archNr, [0x003d0f00n]),
      ALLOW,
      'a thread (CLONE_VM|FS|FILES|SIGHAND|THREAD|…)',
    );
    for (const flag of [0x00020000n, 0x02000000n, 0x04000000n, 0x08000000n, 0x10000000n, 0x20000000n, 0x40000000n]) {
      assert.equal(runFilter(program, clone, archNr, [flag | SIGCHLD]), EPERM, `clone with ${flag.toString(16)}`);
    }
    assert.equal(runFilter(program, clone, archNr, [0x50000000n | SIGCHLD]), EPERM, 'CLONE_NEWUSER|CLONE_NEWNET');
    assert.equal(runFilter(program, clone, archNr, [0x1_0000_0000n | SIGCHLD]), ALLOW, 'high bits alone mean nothing');
    assert.equal(runFilter(program, 435, archNr), ENOSYS, 'clone3 falls back to clone');
    for (const nr of [425, 426, 427]) assert.equal(runFilter(program, nr, archNr), EPERM, `io_uring ${nr}`);
  }
});

test('equality on a 64-bit argument compares both words', () => {
  const p = compileSeccomp(
    {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        {
          names: ['personality'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 22,
          args: [{ index: 0, value: 2 ** 40 + 8, op: 'SCMP_CMP_EQ' }],
        },
      ],
    },
    'x64',
  );
  assert.equal(runFilter(p, 135, X86_64, [2n ** 40n + 8n]), 0x00050000 + 22);
  assert.equal(runFilter(p, 135, X86_64, [8n]), ALLOW);
  assert.equal(runFilter(p, 135, X86_64, [2n ** 40n]), ALLOW);
});

test('containers are refused on an architecture whose clone flags the profile does not filter', () => {
  assert.throws(
    () => assertSeccompArch('s390x'),
    (e: unknown) => e instanceof RunnerError && e.code === 'PLATFORM_UNAVAILABLE',
  );
  for (const arch of ['x64', 'ia32', 'arm64', 'arm']) assertSeccompArch(arch);
});
