import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../test/helpers/ports.js';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { tempDir } from '../test/helpers/tmp.js';

/** The servers a benchmark run compares, each started fresh (cold) on 127.0.0.1. */
export interface Contender {
  readonly name: string;
  /** host:port/prefix to put before `bench/<image>`. */
  readonly base: string;
  readonly url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

const CLI = fileURLToPath(new URL('../cli/portcullis.js', import.meta.url));

export function direct(upstream: TestRegistry): Contender {
  return {
    name: 'direct (upstream)',
    base: upstream.host,
    url: upstream.url,
    pid: undefined,
    stop: async () => undefined,
  };
}

export async function registryProxy(remote: string): Promise<Contender> {
  const r = await startRegistry({ proxyRemote: remote });
  return { name: 'docker-registry proxy', base: r.host, url: r.url, pid: r.pid, stop: () => r.stop() };
}

/** Portcullis as its users run it: the CLI in its own process, from a config file. */
export async function portcullis(upstreamHost: string, upstreamUrl: string, pubKey: string): Promise<Contender> {
  const dir = tempDir('portcullis-bench-gw-');
  const port = await freePort();
  writeFileSync(join(dir.path, 'trusted.pub'), readFileSync(pubKey));
  writeFileSync(
    join(dir.path, 'policy.yaml'),
    `rules:\n  - scope: ${upstreamHost}/bench\n    require:\n      - cosign: { keys: [trusted.pub] }\n`,
  );
  writeFileSync(
    join(dir.path, 'config.yaml'),
    [
      `listen: 127.0.0.1:${port}`,
      'dataDir: data',
      'policy: policy.yaml',
      'logLevel: warn',
      'upstreams:',
      `  - { name: "${upstreamHost}", url: "${upstreamUrl}", prefix: up }`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(process.execPath, ['--', CLI, 'serve', '--config', join(dir.path, 'config.yaml')], {
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/healthz`)).ok, 'portcullis to start');
  return {
    name: 'portcullis',
    base: `127.0.0.1:${port}/up`,
    url,
    pid: child.pid,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      dir.cleanup();
    },
  };
}

/** CPU time a process has used so far (user + system), in seconds (Linux clock ticks of 1/100 s). */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at state: utime and stime are 12th and 13th.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A pass-through HTTP proxy in front of the upstream that counts blob GETs. */
export async function countingProxy(
  target: string,
): Promise<{ url: string; host: string; blobGets: (digest: string) => number; stop: () => Promise<void> }> {
  const t = new URL(target);
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.includes('/blobs/')) seen.push(req.url);
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    blobGets: (digest) => seen.filter((u) => u.endsWith(digest)).length,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}
