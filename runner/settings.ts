import { createPublicKey, type KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isObject, parseStrictJson } from '../oci/strict-json.js';
import { RunnerError } from './errors.js';

/**
 * Where secure-run keeps its state: settings (the pinned gateway) in the user's
 * config directory, image and rootfs caches in the user's data directory (XDG base
 * directories). Nothing here is shared between users.
 */
export interface RunnerPaths {
  readonly configDir: string;
  readonly dataDir: string;
  readonly trustFile: string;
}

export function runnerPaths(
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
  uid: number = process.getuid?.() ?? 0,
): RunnerPaths {
  const configDir = join(env.XDG_CONFIG_HOME || join(home, '.config'), 'secure-run');
  // Root's containers run as unprivileged host ids, which cannot traverse root's 0700
  // home: root's images and bundles live where every id can reach them, as podman's do.
  const dataDir = env.XDG_DATA_HOME
    ? join(env.XDG_DATA_HOME, 'secure-run')
    : uid === 0
      ? ROOT_DATA_DIR
      : join(home, '.local', 'share', 'secure-run');
  return { configDir, dataDir, trustFile: join(configDir, 'trust.json') };
}

/** Where root's images, rootfs trees and bundles live unless XDG_DATA_HOME says otherwise. */
export const ROOT_DATA_DIR = '/var/lib/secure-run';

/**
 * Run as root, the container's ids are other users on the host: every existing
 * directory above `dataDir` must let others through (x), or nothing can start. The
 * first one that does not, or undefined.
 */
export function blockedAncestor(dataDir: string, mode: (path: string) => number | undefined): string | undefined {
  const parts = dataDir.split('/').filter((p) => p !== '');
  for (let i = 0; i <= parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const m = mode(dir);
    if (m === undefined) return undefined;
    if ((m & 0o001) === 0) return dir;
  }
  return undefined;
}

/** The one gateway this user trusts, and its pinned key. */
export interface Trust {
  readonly gateway: string;
  readonly publicKeyPem: string;
  readonly fingerprint: string;
  readonly pinnedAt: string;
  /** A CA certificate (PEM) trusted for this gateway's https besides the system store (`trust --ca`). */
  readonly caPem?: string | undefined;
}

export function readTrust(paths: RunnerPaths): Trust {
  let text: string;
  try {
    assertPrivate(paths.trustFile);
    text = readFileSync(paths.trustFile, 'utf8');
  } catch (err) {
    if (err instanceof RunnerError) throw err;
    throw new RunnerError(
      'NOT_TRUSTED',
      `no gateway is trusted yet: run \`secure-run trust GATEWAY_URL\` (looked in ${paths.trustFile})`,
    );
  }
  const doc = parseStrictJson(text, { maxDepth: 4 });
  if (
    !isObject(doc) ||
    typeof doc.gateway !== 'string' ||
    typeof doc.publicKeyPem !== 'string' ||
    typeof doc.fingerprint !== 'string'
  ) {
    throw new RunnerError('NOT_TRUSTED', `${paths.trustFile} is not a trust file written by secure-run`);
  }
  return {
    gateway: doc.gateway,
    publicKeyPem: doc.publicKeyPem,
    fingerprint: doc.fingerprint,
    pinnedAt: String(doc.pinnedAt ?? ''),
    ...(typeof doc.caPem === 'string' ? { caPem: doc.caPem } : {}),
  };
}

export function pinnedKey(trust: Trust): KeyObject {
  return createPublicKey(trust.publicKeyPem);
}

/** Writes the trust file atomically (write, rename) in a directory only the user can enter. */
export function writeTrust(paths: RunnerPaths, trust: Trust): void {
  mkdirSync(paths.configDir, { recursive: true, mode: 0o700 });
  assertPrivate(paths.configDir);
  const tmp = `${paths.trustFile}.${randomBytes(8).toString('hex')}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(trust, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, paths.trustFile);
}

/**
 * Settings and caches must belong to the user running secure-run and be writable by
 * nobody else: root reading another user's trust file (sudo -E keeps HOME and the
 * XDG variables) would run what that user chose to trust.
 */
export function assertPrivate(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    throw new RunnerError('NOT_TRUSTED', `cannot check ${path}: ${(err as Error).message}`);
  }
  const uid = process.geteuid?.() ?? 0;
  if (st.isSymbolicLink())
    throw new RunnerError('NOT_TRUSTED', `${path} is a symlink; secure-run uses only its own files`);
  if (st.uid !== uid)
    throw new RunnerError(
      'NOT_TRUSTED',
      `${path} belongs to uid ${st.uid}, not to you (uid ${uid}): refusing to use another user's settings or caches`,
    );
  if ((st.mode & 0o022) !== 0)
    throw new RunnerError(
      'NOT_TRUSTED',
      `${path} is writable by others (mode ${(st.mode & 0o777).toString(8)}): chmod go-w ${path}`,
    );
}
