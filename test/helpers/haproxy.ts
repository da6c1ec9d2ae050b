import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peer } from './peers.js';
import { freePort, waitFor } from './ports.js';

/**
 * The real HAProxy (Debian's) in front of gateways on 127.0.0.1: round robin, each
 * backend checked on /readyz every 300 ms (down after two failures), and a request
 * whose replica fails before answering is sent to another one (`retry-on`,
 * `option redispatch`): what an operator's load balancer in front of a fleet should do.
 */
export interface TestHaproxy {
  readonly host: string;
  readonly url: string;
  stop(): Promise<void>;
}

export async function startHaproxy(backendPorts: readonly number[]): Promise<TestHaproxy> {
  let bin: string;
  try {
    bin = peer('haproxy');
  } catch {
    throw new Error(
      'test peer "haproxy" is not installed; install it with: apt-get install haproxy (or run bash .ci/install-peers)',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-haproxy-'));
  const port = await freePort();
  const cfg = [
    'global',
    '  maxconn 512',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  retries 3',
    '  option redispatch',
    // A replica that dies before it answers: the (idempotent) request goes to another one.
    '  retry-on conn-failure empty-response response-timeout',
    'frontend gateways',
    `  bind 127.0.0.1:${port}`,
    '  default_backend replicas',
    'backend replicas',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    ...backendPorts.map((p, i) => `  server g${i + 1} 127.0.0.1:${p} check inter 300 fall 2 rise 1`),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const child: ChildProcess = spawn(bin, ['-f', join(dir, 'haproxy.cfg'), '-db'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
      return fetch(`${url}/readyz`)
        .then(async (r) => (await r.arrayBuffer(), r.status === 200))
        .catch(() => false);
    }, `HAProxy on ${url}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host: `127.0.0.1:${port}`, url, stop };
}
