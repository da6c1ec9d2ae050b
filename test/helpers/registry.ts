import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { peer, run } from './peers.js';
import { freePort, waitFor } from './ports.js';
import { tempDir } from './tmp.js';

/** A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1. */
export interface TestRegistry {
  readonly host: string;
  readonly pid: number | undefined;
  readonly url: string;
  readonly root: string;
  stop(): Promise<void>;
}

export async function startRegistry(opts: { basicAuth?: { user: string; password: string }; proxyRemote?: string } = {}): Promise<TestRegistry> {
  const bin = peer('docker-registry');
  const dir = tempDir('portcullis-registry-');
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:', '  level: error', '  formatter: text', '  accesslog:', '    disabled: true',
    'storage:', `  filesystem:`, `    rootdirectory: ${join(dir.path, 'data')}`, '  delete:', '    enabled: true',
    '  maintenance:', '    uploadpurging:', '      enabled: false',
    'http:', `  addr: 127.0.0.1:${port}`, '  secret: test-secret',
  ];
  if (opts.basicAuth) {
    const file = join(dir.path, 'htpasswd');
    await run('htpasswd', ['-Bbc', file, opts.basicAuth.user, opts.basicAuth.password]);
    lines.push('auth:', '  htpasswd:', '    realm: test', `    path: ${file}`);
  }
  if (opts.proxyRemote) lines.push('proxy:', `  remoteurl: ${opts.proxyRemote}`);
  const config = join(dir.path, 'config.yml');
  writeFileSync(config, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(bin, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      const res = await fetch(`${url}/v2/`);
      return res.status === 200 || res.status === 401;
    }, 'docker-registry to start');
  } catch (err) {
    child.kill('SIGKILL');
    dir.cleanup();
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    pid: child.pid,
    url,
    root: dir.path,
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
