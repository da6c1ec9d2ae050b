import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunnerError } from '../../../runner/errors.js';
import { parseImageConfig, type ImageConfig } from '../../../runner/runtime/image-config.js';
import { buildSpec, INIT_PATH, mergeEnv, processArgs, resolveUser } from '../../../runner/runtime/spec.js';

const image: ImageConfig = parseImageConfig(
  Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['echo hi'],
        Env: ['PATH=/bin', 'A=1'],
        WorkingDir: '/srv',
        User: 'app',
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`] },
    }),
  ),
);
const host = {
  uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
  gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
  rlimits: [{ type: 'RLIMIT_NOFILE', soft: 4096, hard: 1024 }],
  initPath: '/usr/bin/tini-static',
  etcPasswd: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n',
  etcGroup: 'root:x:0:\nstaff:x:50:\napp:x:1001:\n',
};
const opts = { env: [], volumes: [], tty: false, readOnlyRoot: true };
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof RunnerError ? e.code : 'other';
  }
  return undefined;
};

test('the spec has rootless defaults: namespaces, no new privileges, seccomp, masks, init, read-only root, tmpfs /tmp', () => {
  const spec = buildSpec(image, opts, host) as {
    process: Record<string, unknown>;
    root: { readonly: boolean };
    linux: Record<string, unknown>;
    mounts: { destination: string; source: string }[];
  };
  assert.equal(spec.root.readonly, true);
  assert.equal(spec.process.noNewPrivileges, true);
  assert.deepEqual(spec.process.args, [INIT_PATH, '-s', '-g', '-p', 'SIGKILL', '--', '/bin/sh', '-c', 'echo hi']);
  assert.deepEqual(spec.process.user, { uid: 1000, gid: 1001 });
  assert.equal(spec.process.cwd, '/srv');
  assert.deepEqual((spec.linux.namespaces as { type: string }[]).map((n) => n.type).sort(), [
    'ipc',
    'mount',
    'network',
    'pid',
    'user',
    'uts',
  ]);
  assert.ok((spec.linux.maskedPaths as string[]).includes('/proc/kcore'));
  assert.equal((spec.linux.seccomp as { defaultAction: string }).defaultAction, 'SCMP_ACT_ALLOW');
  assert.ok(spec.mounts.some((m) => m.destination === '/tmp'));
  assert.ok(spec.mounts.some((m) => m.destination === INIT_PATH && m.source === host.initPath));
  assert.deepEqual(
    spec.process.rlimits,
    [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }],
    'never above the host hard limit',
  );
});

const argCases: [string, { command?: string[]; entrypoint?: string }, string[]][] = [
  ['image defaults', {}, ['/bin/sh', '-c', 'echo hi']],
  ['a command replaces Cmd', { command: ['echo bye'] }, ['/bin/sh', '-c', 'echo bye']],
  ['an entrypoint drops Cmd', { entrypoint: '/bin/true' }, ['/bin/true']],
  ['an entrypoint and a command', { entrypoint: '/bin/echo', command: ['x'] }, ['/bin/echo', 'x']],
  ['an empty entrypoint runs the command itself', { entrypoint: '', command: ['/bin/id'] }, ['/bin/id']],
];
for (const [what, o, want] of argCases) test(`args: ${what}`, () => assert.deepEqual(processArgs(image, o), want));

test('env: later entries win, PATH has a default, malformed entries are refused', () => {
  assert.deepEqual(mergeEnv(['PATH=/bin', 'A=1'], ['A=2', 'B=3']), ['PATH=/bin', 'A=2', 'B=3']);
  assert.deepEqual(mergeEnv([], []), ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  assert.equal(
    code(() => mergeEnv([], ['=x'])),
    'IMAGE_INVALID',
  );
});

const users: [string, { uid: number; gid: number }][] = [
  ['', { uid: 0, gid: 0 }],
  ['app', { uid: 1000, gid: 1001 }],
  ['1000', { uid: 1000, gid: 1001 }],
  ['2000', { uid: 2000, gid: 0 }],
  ['app:staff', { uid: 1000, gid: 50 }],
  ['1000:7', { uid: 1000, gid: 7 }],
];
for (const [spec, want] of users)
  test(`user ${JSON.stringify(spec)} → ${want.uid}:${want.gid}`, () => assert.deepEqual(resolveUser(spec, host), want));

test('unknown users and groups, relative working directories and root volumes are refused', () => {
  assert.equal(
    code(() => resolveUser('nobody-here', host)),
    'IMAGE_INVALID',
  );
  assert.equal(
    code(() => resolveUser('app:nogroup', host)),
    'IMAGE_INVALID',
  );
  assert.equal(
    code(() => buildSpec(image, { ...opts, workdir: 'srv' }, host)),
    'IMAGE_INVALID',
  );
  assert.equal(
    code(() => buildSpec(image, { ...opts, volumes: [{ source: '/x', destination: '/', readOnly: true }] }, host)),
    'IMAGE_INVALID',
  );
  assert.equal(
    code(() =>
      parseImageConfig(Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"zfs","diff_ids":[]}}')),
    ),
    'IMAGE_INVALID',
  );
});

test('bwrap refuses a terminal rather than run without one', async () => {
  const { translate } = await import('../../../runner/runtime/bwrap.js');
  const spec = buildSpec(
    image,
    { env: [], volumes: [], tty: true, readOnlyRoot: true, user: '0' },
    {
      uidMappings: [{ containerID: 0, hostID: 0, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: 0, size: 1 }],
      rlimits: [],
      initPath: '/usr/bin/tini-static',
      rootfsPath: '/tmp/rootfs',
    },
  );
  assert.throws(() => translate(spec), RunnerError);
  assert.ok(translate({ ...spec, process: { ...(spec.process as object), terminal: false } }).includes('--seccomp'));
});
