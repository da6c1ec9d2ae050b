import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { peer, run } from './peers.js';
import { freePort, waitFor } from './ports.js';
import { tempDir } from './tmp.js';

/** A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1. */
export interface TestRegistry {
  readonly host: string;
  readonly pid: number | undefined;
  readonly url: string;
  readonly root: string;
  /** With `accessLog`: every request the registry served so far, oldest first. */
  requests(): readonly RegistryRequest[];
  stop(): Promise<void>;
}

/** One line of docker-registry's access log. */
export interface RegistryRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly userAgent: string;
}

const ACCESS_LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) \S+ "[^"]*" "((?:[^"\\]|\\.)*)"/;

/**
 * The port is picked before docker-registry binds it, so another test process may
 * take it first: readiness requires this instance's own header, and a registry that
 * exits (address in use) is started again on another port.
 */
export async function startRegistry(
  opts: { basicAuth?: { user: string; password: string }; proxyRemote?: string; accessLog?: boolean } = {},
): Promise<TestRegistry> {
  const bin = peer('docker-registry');
  const dir = tempDir('portcullis-registry-');
  const instance = randomUUID();
  let htpasswd: string | undefined;
  if (opts.basicAuth) {
    htpasswd = join(dir.path, 'htpasswd');
    await run('htpasswd', ['-Bbc', htpasswd, opts.basicAuth.user, opts.basicAuth.password]);
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const lines = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  formatter: text',
      '  accesslog:',
      `    disabled: ${opts.accessLog ? 'false' : 'true'}`,
      'storage:',
      `  filesystem:`,
      `    rootdirectory: ${join(dir.path, 'data')}`,
      '  delete:',
      '    enabled: true',
      '  maintenance:',
      '    uploadpurging:',
      '      enabled: false',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '  secret: test-secret',
      '  headers:',
      `    X-Test-Instance: [${instance}]`,
    ];
    if (htpasswd) lines.push('auth:', '  htpasswd:', '    realm: test', `    path: ${htpasswd}`);
    if (opts.proxyRemote) lines.push('proxy:', `  remoteurl: ${opts.proxyRemote}`);
    const config = join(dir.path, 'config.yml');
    writeFileSync(config, `${lines.join('\n')}\n`);
    const child: ChildProcess = spawn(bin, ['serve', config], {
      stdio: ['ignore', opts.accessLog ? 'pipe' : 'ignore', 'pipe'],
    });
    const requests: RegistryRequest[] = [];
    let partial = '';
    child.stdout?.on('data', (c: Buffer) => {
      const lines = (partial + c.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const m = ACCESS_LINE.exec(line);
        if (m && requests.length < 100_000)
          requests.push({
            method: m[1] as string,
            path: m[2] as string,
            status: Number(m[3]),
            userAgent: m[4] as string,
          });
      }
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    let exited = false;
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) {
          exited = true;
          return true;
        }
        const res = await fetch(`${url}/v2/`);
        await res.arrayBuffer();
        return (res.status === 200 || res.status === 401) && res.headers.get('x-test-instance') === instance;
      }, 'docker-registry to start');
    } catch (err) {
      child.kill('SIGKILL');
      dir.cleanup();
      throw err;
    }
    if (exited) {
      if (attempt < 3) continue;
      dir.cleanup();
      throw new Error(`docker-registry exited: ${stderr}`);
    }
    return registryHandle(child, port, url, dir, requests);
  }
}

function registryHandle(
  child: ChildProcess,
  port: number,
  url: string,
  dir: { path: string; cleanup(): void },
  requests: readonly RegistryRequest[],
): TestRegistry {
  return {
    host: `127.0.0.1:${port}`,
    pid: child.pid,
    url,
    root: dir.path,
    requests: () => [...requests],
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      dir.cleanup();
    },
  };
}

/**
 * Writes a manifest straight into the registry's storage, as distribution lays it out,
 * for a fixture whose blobs are not at hand (a PUT would refuse it): docker-registry
 * then serves it by digest (and `tag`) like any other.
 */
export function plantManifest(reg: TestRegistry, repo: string, bytes: Buffer, tag?: string): string {
  const hex = createHash('sha256').update(bytes).digest('hex');
  const v2 = join(reg.root, 'data', 'docker', 'registry', 'v2');
  const put = (path: string, content: string | Buffer) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  };
  put(join(v2, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'), bytes);
  const manifests = join(v2, 'repositories', repo, '_manifests');
  put(join(manifests, 'revisions', 'sha256', hex, 'link'), `sha256:${hex}`);
  if (tag !== undefined) {
    put(join(manifests, 'tags', tag, 'current', 'link'), `sha256:${hex}`);
    put(join(manifests, 'tags', tag, 'index', 'sha256', hex, 'link'), `sha256:${hex}`);
  }
  return `sha256:${hex}`;
}

/** Uploads a blob through the registry API (POST, then PUT with the digest). */
export async function pushBlob(reg: TestRegistry, repo: string, bytes: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const start = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (start.status !== 202 || !location) throw new Error(`blob upload to ${repo} answered ${start.status}`);
  const url = new URL(location, reg.url);
  url.searchParams.set('digest', digest);
  const done = await fetch(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  if (done.status !== 201) throw new Error(`blob upload to ${repo} answered ${done.status}: ${await done.text()}`);
  return digest;
}
