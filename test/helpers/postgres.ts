import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { initGateway } from '../../gateway/init.js';
import { run } from './peers.js';
import { freePort, waitFor } from './ports.js';

/**
 * A real PostgreSQL server of the test's own: Debian's binaries, a fresh cluster made
 * with initdb as an unprivileged user (PostgreSQL refuses to run as root), password
 * (SCRAM) authentication, listening on 127.0.0.1 on a port chosen now and on a Unix
 * socket in its own directory. fsync is off: the tests kill gateways, not this server.
 */
export const PG_USER = 'portcullis-pg';
const ROLE = 'portcullis';

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** A file holding the password (for a gateway's `passwordFile`). */
  readonly passwordFile: string;
  /** With `tls`: the CA certificate (PEM file) the server's certificate chains to. */
  readonly caFile: string | undefined;
  /** A new, empty database; its connection URL carries no password. */
  createDatabase(name?: string): Promise<{ name: string; url: string }>;
  stop(): Promise<void>;
}

function pgBin(name: string): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', name)))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error(
      `test peer "${name}" (PostgreSQL) is not installed; install it with: apt-get install postgresql (or run bash .ci/install-peers)`,
    );
  return join(base, versions[0] as string, 'bin', name);
}

let databases = 0;

/**
 * `tls`: the server also offers TLS with a certificate for 127.0.0.1 from a CA made
 * by `portcullis init` (its ca.crt is `caFile`); password auth is then allowed over
 * TLS connections only (`hostssl`), so a client that skipped TLS is refused.
 */
export async function startPostgres(opts: { tls?: boolean } = {}): Promise<TestPostgres> {
  const initdb = pgBin('initdb');
  const postgres = pgBin('postgres');
  if ((await run('id', ['-u', PG_USER], { allowFail: true })).code !== 0)
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', PG_USER]);
  const uid = Number((await run('id', ['-u', PG_USER])).stdout.trim());
  const gid = Number((await run('id', ['-g', PG_USER])).stdout.trim());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pg-'));
  chownSync(dir, uid, gid);
  chmodSync(dir, 0o755);
  const password = `pw-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  const passwordFile = join(dir, 'password');
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o644 });
  const data = join(dir, 'data');
  // setpriv execs the program itself (runuser would stay as its parent, between the test and the server's signals).
  const asUser = ['--reuid', String(uid), '--regid', String(gid), '--clear-groups', '--'];
  await run(
    'setpriv',
    [
      ...asUser,
      initdb,
      '-D',
      data,
      '-U',
      ROLE,
      '--auth=scram-sha-256',
      `--pwfile=${passwordFile}`,
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ],
    { cwd: dir },
  );
  const tlsArgs: string[] = [];
  let caFile: string | undefined;
  if (opts.tls === true) {
    const made = initGateway(join(dir, 'init'), { hosts: ['127.0.0.1'] });
    caFile = made.caCert;
    for (const f of ['server.crt', 'server.key']) {
      copyFileSync(join(dir, 'init', 'tls', f), join(dir, f));
      chownSync(join(dir, f), uid, gid);
      chmodSync(join(dir, f), 0o600);
    }
    chmodSync(join(dir, 'init'), 0o755);
    chmodSync(join(dir, 'init', 'tls'), 0o755);
    chmodSync(caFile, 0o644);
    writeFileSync(
      join(data, 'pg_hba.conf'),
      'local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n',
    );
    tlsArgs.push(
      '-c',
      'ssl=on',
      '-c',
      `ssl_cert_file=${join(dir, 'server.crt')}`,
      '-c',
      `ssl_key_file=${join(dir, 'server.key')}`,
    );
  }
  const port = await freePort();
  const child: ChildProcess = spawn(
    'setpriv',
    [
      ...asUser,
      postgres,
      '-D',
      data,
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=200',
      ...tlsArgs,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ssl = caFile === undefined ? {} : { ssl: { ca: readFileSync(caFile, 'utf8'), rejectUnauthorized: true } };
  const connect = (database: string) =>
    new pg.Client({ host: '127.0.0.1', port, user: ROLE, password, database, connectionTimeoutMillis: 2000, ...ssl });
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`postgres exited: ${stderr}`);
      const c = connect('postgres');
      try {
        await c.connect();
        return true;
      } finally {
        await c.end().catch(() => undefined);
      }
    }, `PostgreSQL on 127.0.0.1:${port}`);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${stderr}`, { cause: err });
  }
  return {
    host: '127.0.0.1',
    port,
    user: ROLE,
    password,
    passwordFile,
    caFile,
    async createDatabase(name = `t${process.pid}_${++databases}`) {
      const c = connect('postgres');
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await c.end();
      }
      return { name, url: `postgres://${ROLE}@127.0.0.1:${port}/${name}` };
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGINT'); // fast shutdown
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
