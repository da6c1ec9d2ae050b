import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type TestDaemon } from './daemon.js';
import { run, type RunResult } from './peers.js';

/**
 * Real container engines as clients, each with its own state under a test's
 * directory: Docker Engine (root, no bridge, no iptables, vfs) and containerd (no CRI).
 * Nothing of the machine's own engines is touched.
 */
export interface TestEngine {
  /** The engine's CLI (docker, or ctr with its address and namespace) with these arguments. */
  cli(args: readonly string[], opts?: { input?: string }): Promise<RunResult>;
  log(): string;
  stop(): Promise<void>;
}

export async function startDockerEngine(
  dir: string,
  opts: { args?: readonly string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<TestEngine> {
  const sock = join(dir, 'docker.sock');
  const cli = (args: readonly string[], o: { input?: string } = {}) =>
    run('docker', ['-H', `unix://${sock}`, ...args], {
      env: { PATH: process.env.PATH, DOCKER_CONFIG: join(dir, 'client') },
      allowFail: true,
      timeoutMs: 60_000,
      ...o,
    });
  writeFileSync(join(dir, 'daemon.json'), '{}');
  const daemon: TestDaemon = await startDaemon(
    'dockerd',
    [
      '--config-file',
      join(dir, 'daemon.json'),
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--storage-driver',
      'vfs',
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'docker.pid'),
      '-H',
      `unix://${sock}`,
      ...(opts.args ?? []),
    ],
    { env: { PATH: process.env.PATH, ...opts.env }, ready: async () => (await cli(['version'])).code === 0 },
  );
  return {
    cli,
    log: () => daemon.log(),
    async stop() {
      await daemon.stop(15_000);
      // dockerd bind-mounts its data root onto itself; a clean stop undoes it, a kill may not.
      const data = join(dir, 'data');
      for (let i = 0; i < 4 && readFileSync('/proc/mounts', 'utf8').includes(` ${data} `); i++)
        await run('umount', [data], { allowFail: true });
    },
  };
}

export async function startContainerd(dir: string): Promise<TestEngine> {
  const sock = join(dir, 'containerd.sock');
  const config = [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${sock}"`,
    '[ttrpc]',
    `  address = "${sock}.ttrpc"`,
    '[debug]',
    `  address = "${join(dir, 'debug.sock')}"`,
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${join(dir, 'opt')}"`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'containerd.toml'), config);
  const daemon = await startDaemon('containerd', ['--config', join(dir, 'containerd.toml')], {
    ready: async () =>
      (await run('ctr', ['--address', sock, 'version'], { allowFail: true, timeoutMs: 5000 })).code === 0,
  });
  return {
    cli: (args, o = {}) =>
      run('ctr', ['--address', sock, '--namespace', 'portcullis-test', ...args], {
        allowFail: true,
        timeoutMs: 60_000,
        ...o,
      }),
    log: () => daemon.log(),
    // Snapshots are mounted only while a container uses them: none are.
    stop: () => daemon.stop(8000),
  };
}
