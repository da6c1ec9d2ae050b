import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { waitFor } from '../helpers/ports.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, SECURE_RUN_CLI, secureRunHome } from '../helpers/secure-run.js';

const CLI = SECURE_RUN_CLI;

/** The container's `sleep <marker>` processes (not secure-run, whose argv also holds the marker). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0] === '/bin/sleep' && argv[1] === marker) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

describe('signals reach the container, and killing secure-run leaves no container behind', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, env } = secureRunHome();

  before(async () => {
    chmodSync(home.path, 0o711);
    ({ world, gw, stop } = await startWorldGateway());
    await run(process.execPath, ['--', CLI, 'trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url)], {
      env,
    });
    // Warm the caches so that the tests below time the container, not the pull.
    await run(process.execPath, ['--', CLI, `${world.registry.host}/test/signed:1`, '-c', 'true'], { env });
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  const start = (marker: string, runtime = 'crun') =>
    spawn(
      process.execPath,
      [
        '--',
        CLI,
        '--runtime',
        runtime,
        '--entrypoint',
        '',
        `${world.registry.host}/test/signed:1`,
        '/bin/sleep',
        marker,
      ],
      { env, stdio: 'ignore' },
    );

  for (const [runtime, marker] of [
    ['crun', '301'],
    ['runc', '303'],
  ] as const) {
    test(`${runtime}: SIGTERM to secure-run stops the container; its status comes back`, async () => {
      const child = start(marker, runtime);
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      await waitFor(async () => processesWith(marker).length > 0, 'the container to start');
      child.kill('SIGTERM');
      assert.equal(await exited, 143);
      await waitFor(async () => processesWith(marker).length === 0, 'the container to go away', 5000);
    });
  }

  test('SIGKILL to secure-run takes the container with it', async () => {
    const marker = '302';
    const child = start(marker);
    const exited = new Promise((r) => child.on('exit', r));
    await waitFor(async () => processesWith(marker).length > 0, 'the container to start');
    child.kill('SIGKILL');
    await exited;
    await waitFor(async () => processesWith(marker).length === 0, 'the container to die with secure-run', 5000);
    // Killed, it could not clean up: its bundle (the spec holds the -e values) and the runtime's state stay…
    const data = join(home.path, 'data', 'secure-run');
    const left = readdirSync(join(data, 'containers'));
    assert.equal(left.length, 1, 'the killed run left its bundle');
    assert.ok(readdirSync(join(data, 'state')).includes(left[0] as string), "and the runtime's state");
    // …until the next run, which removes what belongs to dead runs.
    await run(process.execPath, ['--', CLI, `${world.registry.host}/test/signed:1`, '-c', 'true'], { env });
    assert.deepEqual(readdirSync(join(data, 'containers')), []);
    assert.deepEqual(readdirSync(join(data, 'state')), []);
  });

  test('a live run keeps what it owns while another run sweeps', async () => {
    const marker = '304';
    const child = start(marker);
    const exited = new Promise((r) => child.on('exit', r));
    await waitFor(async () => processesWith(marker).length > 0, 'the container to start');
    await run(process.execPath, ['--', CLI, `${world.registry.host}/test/signed:1`, '-c', 'true'], { env });
    assert.equal(readdirSync(join(home.path, 'data', 'secure-run', 'containers')).length, 1);
    assert.equal(processesWith(marker).length, 1, 'the other container still runs');
    child.kill('SIGTERM');
    await exited;
  });
});
