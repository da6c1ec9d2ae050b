import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, chownSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './peers.js';

/**
 * An unprivileged user made by the test (useradd), and a copy of the built CLI it can
 * reach when the checkout itself is not readable by other users.
 */
export const TEST_USER = 'portcullis-test';

export async function ensureTestUser(): Promise<{ uid: number; gid: number }> {
  const has = await run('id', ['-u', TEST_USER], { allowFail: true });
  if (has.code !== 0) await run('useradd', ['--create-home', '--shell', '/bin/sh', TEST_USER]);
  const uid = Number((await run('id', ['-u', TEST_USER])).stdout.trim());
  const gid = Number((await run('id', ['-g', TEST_USER])).stdout.trim());
  return { uid, gid };
}

/** The secure-run CLI as the test user can run it, and a cleanup. */
export async function cliForUser(): Promise<{ cli: string; cleanup: () => void }> {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const cli = join(root, 'dist', 'bin', 'secure-run.js');
  const readable = await run('runuser', ['-u', TEST_USER, '--', 'test', '-r', cli], { allowFail: true });
  if (readable.code === 0) return { cli, cleanup: () => undefined };
  const copy = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
  chmodSync(copy, 0o755);
  for (const part of ['package.json', 'dist', 'node_modules'])
    cpSync(join(root, part), join(copy, part), { recursive: true });
  return {
    cli: join(copy, 'dist', 'bin', 'secure-run.js'),
    cleanup: () => rmSync(copy, { recursive: true, force: true }),
  };
}

/** A directory owned by the test user. */
export function userDir(uid: number, gid: number): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'portcullis-user-'));
  chownSync(path, uid, gid);
  if (!existsSync(path)) mkdirSync(path);
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
