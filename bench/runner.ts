import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cosignKeyPair, cosignSign } from '../test/helpers/cosign.js';
import { buildImage, pushImage } from '../test/helpers/images.js';
import { run } from '../test/helpers/peers.js';
import { startRegistry } from '../test/helpers/registry.js';
import { tempDir } from '../test/helpers/tmp.js';
import { cliForUser, ensureTestUser, TEST_USER, userDir } from '../test/helpers/unprivileged.js';
import { extractConfined } from '../runner/unpack/confined.js';
import { hostRlimits, initBinary } from '../runner/host.js';
import { buildSpec } from '../runner/runtime/spec.js';
import { portcullis } from './contenders.js';
import { median, timed } from './measure.js';

/**
 * secure-run against its anchors, as an unprivileged user: launching a cached
 * busybox image running /bin/true (secure-run, podman run --rm --runtime runc
 * --network none, and crun alone on the same rootfs through a user namespace held
 * open for it), and unpacking an image of many small files (secure-run's confined
 * extraction, umoci unpack --rootless, GNU tar; these three run from the benchmark
 * process itself, on the same files).
 */
export interface RunnerBench {
  readonly launch: Record<string, number | undefined>;
  readonly unpack: Record<string, number | undefined>;
}

export async function benchRunner(opts: {
  repeat: number;
  smallFilesLayer: { path: string; diffId: string } | undefined;
  smallFilesLayout: { layout: string; tag: string } | undefined;
  log: (m: string) => void;
}): Promise<RunnerBench> {
  const ids = await ensureTestUser();
  const cli = await cliForUser();
  const home = userDir(ids.uid, ids.gid);
  const work = tempDir('portcullis-bench-runner-');
  const registry = await startRegistry();
  const env = [
    `HOME=${home.path}`,
    `XDG_CONFIG_HOME=${join(home.path, 'config')}`,
    `XDG_DATA_HOME=${join(home.path, 'data')}`,
    `PATH=${process.env.PATH}`,
  ];
  const asUser = (args: string[]) => ['-u', TEST_USER, '--', 'env', ...env, ...args];
  try {
    const layout = join(work.path, 'layout');
    await buildImage(layout, 'busybox', { text: 'bench' });
    const digest = await pushImage(layout, 'busybox', `${registry.host}/bench/busybox:1`);
    const key = await cosignKeyPair(work.path, 'bench');
    await cosignSign(key, `${registry.host}/bench/busybox@${digest}`);
    const gw = await portcullis(registry.host, registry.url, key.pub);
    const launch: Record<string, number | undefined> = {};
    try {
      const fp = ((await (await fetch(`${gw.url}/v2/_portcullis/gateway.json`)).json()) as { fingerprint: string })
        .fingerprint;
      await run('runuser', asUser([process.execPath, '--', cli.cli, 'trust', gw.url, '--fingerprint', fp]));
      const image = `${registry.host}/bench/busybox:1`;
      await run('runuser', asUser([process.execPath, '--', cli.cli, image, '-c', 'true']));
      opts.log('launch: secure-run (cached, attestation checked each run)');
      const sr: number[] = [];
      for (let i = 0; i < opts.repeat * 3; i++)
        sr.push(
          await timed(
            'runuser',
            asUser([process.execPath, '--', cli.cli, '--pull', 'never', '--entrypoint', '', image, '/bin/true']),
          ),
        );
      launch['secure-run ms'] = median(sr) * 1000;
      // The default: a cached run that also asks the gateway for its current attestation (revocations).
      opts.log('launch: secure-run --pull missing (cached, and the gateway asked about the digest)');
      const asked: number[] = [];
      for (let i = 0; i < opts.repeat * 3; i++)
        asked.push(
          await timed('runuser', asUser([process.execPath, '--', cli.cli, '--entrypoint', '', image, '/bin/true'])),
        );
      launch['secure-run --pull missing ms'] = median(asked) * 1000;

      opts.log('launch: podman run --rm --runtime runc --network none');
      const pd = join(home.path, 'podman');
      for (const d of ['root', 'runroot', 'tmp']) mkdirSync(join(pd, d), { recursive: true });
      writeFileSync(join(pd, 'registries.conf'), `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
      writeFileSync(join(pd, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
      chownRecursive(pd, ids.uid, ids.gid);
      const podman = [
        'podman',
        '--root',
        join(pd, 'root'),
        '--runroot',
        join(pd, 'runroot'),
        '--tmpdir',
        join(pd, 'tmp'),
        '--storage-driver',
        'vfs',
        '--events-backend',
        'none',
        '--cgroup-manager',
        'cgroupfs',
      ];
      const podmanEnv = [`CONTAINERS_REGISTRIES_CONF=${join(pd, 'registries.conf')}`];
      const pulled = await run(
        'runuser',
        asUser([...podmanEnv, ...podman, 'pull', '--signature-policy', join(pd, 'policy.json'), image]),
        { allowFail: true },
      );
      if (pulled.code === 0) {
        const t: number[] = [];
        for (let i = 0; i < opts.repeat * 3; i++)
          t.push(
            await timed(
              'runuser',
              asUser([
                ...podmanEnv,
                ...podman,
                'run',
                '--rm',
                '--runtime',
                'runc',
                '--network',
                'none',
                '--entrypoint',
                '/bin/true',
                image,
              ]),
            ),
          );
        launch['podman ms'] = median(t) * 1000;
      } else {
        opts.log(`podman pull failed: ${pulled.stderr.slice(0, 300)}`);
      }

      opts.log('launch: crun alone on the same rootfs');
      launch['crun alone ms'] = await bareCrun(home.path, ids, asUser, opts.repeat * 3);
    } finally {
      await gw.stop();
    }

    const unpack: Record<string, number | undefined> = {};
    if (opts.smallFilesLayer && opts.smallFilesLayout) {
      opts.log('unpack: many small files');
      const layer = opts.smallFilesLayer;
      const layout = opts.smallFilesLayout;
      const ours: number[] = [];
      const gnu: number[] = [];
      const umoci: number[] = [];
      // Each timing starts with the disk's dirty pages written out (sync, untimed), so
      // no tool pays for the writeback of the one before it, and the order of the three
      // turns each round: on this disk the first extraction after a removal is often slower.
      const settle = () => spawnSync('sync', [], { stdio: 'ignore' });
      for (let i = 0; i < opts.repeat; i++) {
        const dirs = ['ours', 'tar', 'umoci'].map((n) => join(work.path, `u-${n}-${i}`));
        const [a, b, c] = dirs as [string, string, string];
        const tools: (() => Promise<void>)[] = [
          async () => {
            mkdirSync(a);
            settle();
            const t0 = process.hrtime.bigint();
            await extractConfined({
              root: a,
              layers: [layer],
              keepSetuid: false,
              maxEntries: 1_000_000,
              maxLayerBytes: 1 << 30,
            });
            ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
          },
          async () => {
            mkdirSync(b);
            settle();
            gnu.push(await timed('tar', ['-xf', layer.path, '-C', b]));
          },
          async () => {
            settle();
            umoci.push(await timed('umoci', ['unpack', '--rootless', '--image', `${layout.layout}:${layout.tag}`, c]));
          },
        ];
        for (let k = 0; k < tools.length; k++) await (tools[(i + k) % tools.length] as () => Promise<void>)();
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
        settle();
      }
      unpack['secure-run s'] = median(ours);
      unpack['GNU tar s'] = median(gnu);
      unpack['umoci s'] = median(umoci);
    }
    return { launch, unpack };
  } finally {
    await registry.stop();
    work.cleanup();
    home.cleanup();
    cli.cleanup();
  }
}

/** crun run of the cached rootfs, in a user namespace held open by one holder for all runs. */
async function bareCrun(
  home: string,
  ids: { uid: number; gid: number },
  asUser: (a: string[]) => string[],
  n: number,
): Promise<number | undefined> {
  const rootfsDir = join(home, 'data', 'secure-run', 'rootfs');
  const entry = readdirSync(rootfsDir).find((d) => !d.startsWith('.'));
  if (!entry) return undefined;
  const bundle = join(home, 'bare');
  mkdirSync(bundle);
  // The spec secure-run would use, so that only the launch path differs.
  const one = [{ containerID: 0, hostID: 0, size: 1 }];
  const image = {
    architecture: 'amd64',
    os: 'linux',
    entrypoint: [],
    cmd: ['/bin/true'],
    env: [],
    workingDir: '/',
    user: '',
    diffIds: [],
  };
  const spec = buildSpec(
    image,
    { env: [], volumes: [], tty: false, readOnlyRoot: true },
    {
      uidMappings: one,
      gidMappings: one,
      rlimits: hostRlimits(),
      initPath: initBinary(),
      rootfsPath: join(rootfsDir, entry, 'rootfs'),
    },
  );
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  chownRecursive(bundle, ids.uid, ids.gid);
  const holder: ChildProcess = spawn(
    'runuser',
    asUser(['unshare', '--user', '--map-root-user', '--mount', '--propagation', 'private', '--', 'sleep', '600']),
    { stdio: 'ignore' },
  );
  try {
    await new Promise((r) => setTimeout(r, 300));
    const pid = (await run('pgrep', ['-n', '-u', String(ids.uid), '-x', 'sleep'])).stdout.trim();
    await run(
      'runuser',
      asUser([
        'nsenter',
        '-t',
        pid,
        '--user',
        '--mount',
        '--preserve-credentials',
        '--',
        'mount',
        '-t',
        'tmpfs',
        '-o',
        'ro',
        'tmpfs',
        '/sys/fs/cgroup/unified',
      ]),
      { allowFail: true },
    );
    const t: number[] = [];
    for (let i = 0; i < n; i++) {
      t.push(
        await timed(
          'runuser',
          asUser([
            'nsenter',
            '-t',
            pid,
            '--user',
            '--mount',
            '--preserve-credentials',
            '--',
            'crun',
            '--root',
            join(home, 'crun-state'),
            '--cgroup-manager=disabled',
            'run',
            '--bundle',
            bundle,
            `bare-${i}`,
          ]),
        ),
      );
    }
    return median(t) * 1000;
  } finally {
    holder.kill('SIGKILL');
  }
}

function chownRecursive(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const e of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, e.name);
    if (e.isDirectory()) chownRecursive(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}
