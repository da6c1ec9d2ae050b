import { spawn, type ChildProcess } from 'node:child_process';
import { peer } from './peers.js';
import { waitFor } from './ports.js';

/** A real daemon (containerd, dockerd) started by a test, with the tail of its log for failure messages. */
export interface TestDaemon {
  log(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs: number): Promise<void>;
}

export async function startDaemon(
  name: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; ready: () => Promise<boolean> },
): Promise<TestDaemon> {
  const child: ChildProcess = spawn(peer(name), args, {
    env: opts.env ?? process.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-8000)));
  const daemon: TestDaemon = {
    log: () => log,
    async stop(graceMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited: ${log}`);
      return opts.ready();
    }, `${name} to start`);
  } catch (err) {
    await daemon.stop(1000);
    throw err;
  }
  return daemon;
}
