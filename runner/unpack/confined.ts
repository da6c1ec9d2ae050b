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
}

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

export async function extractConfined(plan: ExtractPlan): Promise<{ entries: number; skipped: string[] }> {
  const bwrap = findProgram('bwrap');
  if (!bwrap) throw new UnpackError('CONFINEMENT_UNAVAILABLE', 'bubblewrap (bwrap) is needed to unpack layers safely: apt-get install bubblewrap (see `secure-run doctor`)');
  const args = [
    '--ro-bind', '/', '/', '--bind', plan.root, plan.root, '--dev', '/dev', '--proc', '/proc',
    // Root mode hands files to the container's id range, which a fresh user namespace
    // could not name: every namespace but the user one, and only the ownership capabilities.
    ...(plan.idMap
      ? ['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try', '--cap-drop', 'ALL', '--cap-add', 'CAP_CHOWN', '--cap-add', 'CAP_FOWNER', '--cap-add', 'CAP_DAC_OVERRIDE']
      : ['--unshare-all', '--cap-drop', 'ALL']),
    '--die-with-parent', '--new-session',
    '--', process.execPath, CHILD,
  ];
  const child = spawn(bwrap, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-64 * 1024)));
  child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-8 * 1024)));
  child.stdin.end(JSON.stringify(plan));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? -1));
  });
  const last = out.trim().split('\n').pop() ?? '';
  let result: unknown;
  try {
    result = parseStrictJson(last, { maxDepth: 4 });
  } catch {
    throw new UnpackError('UNPACK_FAILED', `the extraction process failed (exit ${code}): ${err.trim().slice(0, 500)}`);
  }
  if (!isObject(result)) throw new UnpackError('UNPACK_FAILED', 'the extraction process gave no result');
  if (result.ok === true && code === 0) return { entries: Number(result.entries), skipped: (result.skipped as string[]) ?? [] };
  throw new UnpackError((typeof result.code === 'string' ? result.code : 'UNPACK_FAILED') as UnpackErrorCode, String(result.message ?? 'extraction failed'));
}
