import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { peer, run } from './peers.js';
import { freePort, waitFor } from './ports.js';

/**
 * A real S3-compatible server of the test's own: OpenStack Swift from Debian, single
 * node (one replica, one device), its proxy with the s3api middleware and tempauth,
 * and a memcached for tempauth — every process on a 127.0.0.1 port chosen now, every
 * file (rings, configs, the device) in its own temporary directory. S3 credentials
 * are tempauth's `account:user` and key.
 */
export interface TestSwift {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** A new, empty bucket. */
  createBucket(name?: string): Promise<string>;
  /** An S3 client of the test's own, to look at or tamper with what a store wrote. */
  client(): S3Client;
  stop(): Promise<void>;
}

const INSTALL = 'apt-get install swift-proxy swift-account swift-container swift-object memcached';
let buckets = 0;

function bin(name: string): string {
  try {
    return peer(name);
  } catch {
    throw new Error(
      `test peer "${name}" (OpenStack Swift) is not installed; install it with: ${INSTALL} (or run bash .ci/install-peers)`,
    );
  }
}

export async function startSwift(): Promise<TestSwift> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-swift-'));
  const children: ChildProcess[] = [];
  const stderr: string[] = [];
  const start = (cmd: string, args: string[]) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    const i = stderr.push('') - 1;
    child.stderr?.on('data', (c: Buffer) => (stderr[i] = ((stderr[i] ?? '') + c.toString()).slice(-4000)));
    children.push(child);
    return child;
  };
  const stopAll = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
            c.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [memcached, proxy, account, container, object] = [
      bin('memcached'),
      bin('swift-proxy-server'),
      bin('swift-account-server'),
      bin('swift-container-server'),
      bin('swift-object-server'),
    ];
    const ringBuilder = bin('swift-ring-builder');
    const ports = { memcached: 0, proxy: 0, account: 0, container: 0, object: 0 };
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    mkdirSync(join(dir, 'srv', 'd1'), { recursive: true });
    // swift_dir points every server here, swift.conf included (not the system's /etc/swift).
    writeFileSync(
      join(dir, 'swift.conf'),
      `[swift-hash]\nswift_hash_path_suffix = ${randomUUID()}\nswift_hash_path_prefix = test\n[storage-policy:0]\nname = gold\ndefault = yes\n[swift-constraints]\n`,
    );
    for (const ring of ['account', 'container', 'object'] as const) {
      const builder = join(dir, `${ring}.builder`);
      await run(ringBuilder, [builder, 'create', '6', '1', '1']);
      await run(ringBuilder, [
        builder,
        'add',
        '--region',
        '1',
        '--zone',
        '1',
        '--ip',
        '127.0.0.1',
        '--port',
        String(ports[ring]),
        '--device',
        'd1',
        '--weight',
        '100',
      ]);
      // rebalance exits 1 with a warning for a one-device ring; the ring is written all the same.
      await run(ringBuilder, [builder, 'rebalance'], { allowFail: true });
    }
    const common = (port: number) =>
      [
        '[DEFAULT]',
        'bind_ip = 127.0.0.1',
        `bind_port = ${port}`,
        'workers = 0',
        'user = root',
        `swift_dir = ${dir}`,
        `devices = ${join(dir, 'srv')}`,
        'mount_check = false',
        'log_level = WARNING',
        '',
      ].join('\n');
    for (const ring of ['account', 'container', 'object'] as const) {
      writeFileSync(
        join(dir, `${ring}-server.conf`),
        `${common(ports[ring])}[pipeline:main]\npipeline = ${ring}-server\n[app:${ring}-server]\nuse = egg:swift#${ring}\n`,
      );
    }
    const filters = [
      'catch_errors',
      'gatekeeper',
      'healthcheck',
      'proxy-logging',
      'cache',
      'listing_formats',
      's3api',
      'tempauth',
      'copy',
      'slo',
      'dlo',
    ];
    const eggs: Record<string, string> = { 'proxy-logging': 'proxy_logging', cache: 'memcache' };
    const extra: Record<string, string[]> = {
      s3api: ['location = us-east-1'],
      tempauth: ['user_test_tester = testing .admin'],
      cache: [`memcache_servers = 127.0.0.1:${ports.memcached}`],
    };
    writeFileSync(
      join(dir, 'proxy-server.conf'),
      [
        common(ports.proxy),
        '[pipeline:main]',
        `pipeline = ${filters.join(' ')} proxy-logging proxy-server`,
        '[app:proxy-server]',
        'use = egg:swift#proxy',
        'allow_account_management = true',
        'account_autocreate = true',
        // A loaded test machine: backends get time to answer before the proxy gives up on them.
        'node_timeout = 60',
        'conn_timeout = 5',
        'recoverable_node_timeout = 60',
        ...filters.flatMap((f) => [`[filter:${f}]`, `use = egg:swift#${eggs[f] ?? f}`, ...(extra[f] ?? [])]),
        '',
      ].join('\n'),
    );
    start(memcached, ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-u', 'nobody', '-m', '16']);
    for (const s of ['account', 'container', 'object'] as const)
      start({ account, container, object }[s], [join(dir, `${s}-server.conf`)]);
    start(proxy, [join(dir, 'proxy-server.conf')]);
    const endpoint = `http://127.0.0.1:${ports.proxy}`;
    const creds = { accessKeyId: 'test:tester', secretAccessKey: 'testing' };
    // Ready when a bucket can be made: the proxy answers its healthcheck long before the
    // account, container and object servers (Python, slow to start on a loaded machine) do.
    const client = (maxAttempts?: number) =>
      new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: creds,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        ...(maxAttempts !== undefined ? { maxAttempts } : {}),
      });
    const probe = client(1);
    try {
      await waitFor(
        async () => {
          const dead = children.findIndex((c) => c.exitCode !== null);
          if (dead >= 0) throw new Error(`a Swift process exited: ${stderr[dead]}`);
          return (
            probe
              .send(new CreateBucketCommand({ Bucket: `ready-${process.pid}` }))
              .then(() => true)
              // made by an earlier try whose answer was lost: ready all the same
              .catch((err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode === 409)
          );
        },
        `Swift on ${endpoint}`,
        90_000,
      );
    } finally {
      probe.destroy();
    }
    return {
      endpoint,
      region: 'us-east-1',
      ...creds,
      client: () => client(),
      async createBucket(name = `b${process.pid}-${++buckets}`) {
        const c = client();
        try {
          // A single-process Swift on a loaded 2-core machine may answer 503 SlowDown: tried again.
          for (let attempt = 1; ; attempt++) {
            try {
              await c.send(new CreateBucketCommand({ Bucket: name }));
              break;
            } catch (err) {
              const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
              if (attempt >= 8 || (status !== 503 && status !== 500)) throw err;
              await new Promise((r) => setTimeout(r, 250 * attempt));
            }
          }
        } finally {
          c.destroy();
        }
        return name;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw new Error(`Swift did not start: ${(err as Error).message}\n${stderr.join('\n')}`, { cause: err });
  }
}
