import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  acceptAnythingPolicy,
  serveImage,
  sha256,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { waitFor } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));

describe('SIGKILL in the middle of a cold fill loses nothing and serves nothing partial', () => {
  let up: FaultRegistry;
  const dir = tempDir('portcullis-crash-');
  let port: number;
  let child: ChildProcess | undefined;
  const layer = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 31) & 0xff;
  let digest: string;
  let slow = true;

  before(async () => {
    up = await startFaultRegistry();
    digest = serveImage(up, 'crash/app', 'v1', [{ bytes: layer }]).layerDigests[0] as string;
    up.route('GET', `/v2/crash/app/blobs/${digest}`, (_req, res) => {
      res.writeHead(200, { 'content-length': layer.length });
      if (!slow) return void res.end(layer);
      let offset = 0;
      const timer = setInterval(() => {
        if (offset >= layer.length) return clearInterval(timer);
        res.write(layer.subarray(offset, offset + 256 * 1024));
        offset += 256 * 1024;
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    writeFileSync(join(dir.path, 'policy.yaml'), acceptAnythingPolicy());
    // Port 0: the gateway binds a free port itself and names it in its "started" line.
    writeFileSync(
      join(dir.path, 'config.yaml'),
      [
        'listen: 127.0.0.1:0',
        'dataDir: data',
        'policy: policy.yaml',
        'logLevel: info',
        'upstreams:',
        `  - { name: "${up.host}", url: "${up.url}", prefix: crash }`,
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    child?.kill('SIGKILL');
    await up?.stop();
    dir.cleanup();
  });

  const exited = (c: ChildProcess): Promise<unknown> =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r));
  const start = (): Promise<ChildProcess> => {
    const c = spawn(process.execPath, ['--', CLI, 'serve', '--config', join(dir.path, 'config.yaml')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: c.stdout as Readable });
      const timer = setTimeout(() => reject(new Error('the gateway did not start within 15 s')), 15_000);
      c.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the gateway exited (${code}) before it started`));
      });
      lines.on('line', (line) => {
        let entry: { event?: string; url?: string };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          return;
        }
        if (entry.event === 'started' && entry.url) {
          clearTimeout(timer);
          port = Number(new URL(entry.url).port);
          resolve(c);
        }
      });
    });
  };
  const blobFiles = () => {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else out.push(join(d, e.name));
      }
    };
    walk(join(dir.path, 'data', 'store', 'blobs'));
    return out;
  };

  test('kill mid-fill, restart: temp cleaned, no partial blob, then the pull succeeds', async () => {
    child = await start();
    const firstExit = exited(child);
    const m = await fetch(`http://127.0.0.1:${port}/v2/crash/crash/app/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    await m.arrayBuffer();

    // Start a cold fill, and kill the gateway once about a quarter has arrived.
    let received = 0;
    const killed = new Promise<void>((resolve) => {
      const req = request(`http://127.0.0.1:${port}/v2/crash/crash/app/blobs/${digest}`, (res) => {
        res.on('data', (c: Buffer) => {
          received += c.length;
          if (received > layer.length / 4 && child?.exitCode === null) child.kill('SIGKILL');
        });
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
      req.end();
    });
    await killed;
    await firstExit;
    assert.ok(received < layer.length, 'the client must not have received the whole blob');
    const staged = readdirSync(join(dir.path, 'data', 'store', 'tmp'));
    assert.ok(staged.length > 0, 'the kill left a staged file behind, as a crash would');
    assert.ok(!blobFiles().some((f) => f.endsWith(digest.slice(7))), 'no blob was committed');

    slow = false;
    child = await start();
    assert.deepEqual(readdirSync(join(dir.path, 'data', 'store', 'tmp')), [], 'start-up removed the leftovers');
    const res = await fetch(`http://127.0.0.1:${port}/v2/crash/crash/app/blobs/${digest}`);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
    // The last byte goes out once the blob is verified; the commit to the store follows it.
    await waitFor(async () => blobFiles().some((f) => f.endsWith(digest.slice(7))), 'the blob to be committed');
    const secondExit = exited(child);
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      secondExit.then(() => true),
      new Promise((r) => (timer = setTimeout(() => r(false), 15_000))),
    ]);
    clearTimeout(timer);
    assert.ok(stopped, 'the gateway stops within 15 s of SIGTERM');
  });
});
