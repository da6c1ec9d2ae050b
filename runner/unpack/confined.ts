import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import { UnpackError, type UnpackErrorCode } from './errors.js';

/**
 * Runs the extraction in a child process confined with bubblewrap: the whole host
 * read-only, only the target root writable, new user, mount, pid, network, ipc, uts
 * and cgroup namespaces, no capabilities, killed with its parent. A symlink or path
 * race in a hostile layer can then reach nothing but the target: a write anywhere
 * else fails with EROFS (measured in RUNNER-NOTES), and a hardlink out of the target
 * crosses a mount (EXDEV).
 */
export interface ExtractPlan {
  readonly root: string;
  readonly layers: readonly { path: string; diffId: string }[];
  readonly keepSetuid: boolean;
  readonly maxEntries: number;
  readonly maxLayerBytes: number;
  /** Root mode: give entries the host ids of the container's range (needs CAP_CHOWN in the child). */
  readonly idMap?: { readonly idBase: number; readonly idSize: number } | undefined;
  /** Take the finished tree's seal (see tree.ts) and hand it back. */
  readonly seal?: boolean;
}

export interface ExtractResult {
  readonly entries: number;
  readonly skipped: string[];
  readonly seal?: Record<string, string>;
}

/** A seal line per entry is about 100 bytes; a million entries (the cap) fit. */
const MAX_RESULT_BYTES = 256 * 1024 * 1024;

const CHILD = fileURLToPath(new URL('./extract-child.js', import.meta.url));

export function findProgram(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    // Empty or relative PATH entries would look in the current directory.
    if (!dir.startsWith('/')) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * `enter`: an argv prefix that runs the confinement inside the user namespace of a
 * subordinate id range, as its root (see runtime/userns.ts); ids in `idMap` are then
 * that namespace's.
 */
export async function extractConfined(plan: ExtractPlan, enter?: readonly string[]): Promise<ExtractResult> {
  const bwrap = findProgram('bwrap');
  if (!bwrap)
    throw new UnpackError(
      'CONFINEMENT_UNAVAILABLE',
      'bubblewrap (bwrap) is needed to unpack layers safely: apt-get install bubblewrap (see `secure-run doctor`)',
    );
  const args = [
    '--ro-bind',
    '/',
    '/',
    '--bind',
    plan.root,
    plan.root,
    '--dev',
    '/dev',
    '--proc',
    '/proc',
    // Root mode hands files to the container's id range, which a fresh user namespace
    // could not name: every namespace but the user one, and only the ownership capabilities.
    ...(plan.idMap
      ? [
          '--unshare-ipc',
          '--unshare-pid',
          '--unshare-net',
          '--unshare-uts',
          '--unshare-cgroup-try',
          '--cap-drop',
          'ALL',
          '--cap-add',
          'CAP_CHOWN',
          '--cap-add',
          'CAP_FOWNER',
          '--cap-add',
          'CAP_DAC_OVERRIDE',
        ]
      : ['--unshare-all', '--cap-drop', 'ALL']),
    '--die-with-parent',
    '--new-session',
    '--',
    process.execPath,
    CHILD,
  ];
  const [cmd, ...prefix] = enter ?? [bwrap];
  const child = spawn(cmd as string, enter ? [...prefix, bwrap, ...args] : args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/bin:/bin' },
  });
  const chunks: Buffer[] = [];
  let outBytes = 0;
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    outBytes += c.length;
    if (outBytes <= MAX_RESULT_BYTES) chunks.push(c);
    else child.kill('SIGKILL');
  });
  child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-8 * 1024)));
  child.stdin.end(JSON.stringify(plan));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? -1));
  });
  const out = Buffer.concat(chunks).toString('utf8').trim();
  const last = out.slice(out.lastIndexOf('\n') + 1);
  let result: unknown;
  try {
    result = parseStrictJson(last, { maxDepth: 4 });
  } catch {
    throw new UnpackError('UNPACK_FAILED', `the extraction process failed (exit ${code}): ${err.trim().slice(0, 500)}`);
  }
  if (!isObject(result)) throw new UnpackError('UNPACK_FAILED', 'the extraction process gave no result');
  if (result.ok === true && code === 0) {
    const seal = isObject(result.seal) ? (result.seal as Record<string, string>) : undefined;
    if (plan.seal && !seal) throw new UnpackError('UNPACK_FAILED', 'the extraction process gave no seal');
    return { entries: Number(result.entries), skipped: (result.skipped as string[]) ?? [], ...(seal ? { seal } : {}) };
  }
  throw new UnpackError(
    (typeof result.code === 'string' ? result.code : 'UNPACK_FAILED') as UnpackErrorCode,
    String(result.message ?? 'extraction failed'),
  );
}
