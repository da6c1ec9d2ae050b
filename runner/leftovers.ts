import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree } from './rootfs.js';
import type { UserNamespace } from './runtime/userns.js';
import { OWNED, ownerAlive } from './owner.js';

/**
 * What a killed secure-run leaves behind — a container's bundle (its spec holds the
 * `-e` values, a `--writable-root` copy lives there), the runtime's state, a half-made
 * rootfs, a half-written blob — carries its owner in its name: `<pid>.<starttime>`.
 * Each run removes what belongs to a process that no longer exists (a pid alone could
 * have been reused: the start time tells). What a live run owns is never touched.
 */

export interface Swept {
  readonly bundles: number;
  readonly states: number;
  readonly rootfs: number;
  readonly blobs: number;
}

/**
 * Removes the leftovers of dead runs under `dataDir`. With subordinate ids, trees are
 * removed inside the user namespace (their files belong to its ids). Never throws.
 */
export async function sweepLeftovers(dataDir: string, userns?: UserNamespace): Promise<Swept> {
  const dead = (dir: string): string[] => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    return names.filter((n) => {
      const m = OWNED.exec(n);
      return m !== null && !ownerAlive(m[1] as string);
    });
  };
  let bundles = 0;
  let rootfs = 0;
  for (const name of dead(join(dataDir, 'containers'))) {
    await removeTree(join(dataDir, 'containers', name), userns);
    bundles++;
  }
  const states = dead(join(dataDir, 'state'));
  for (const name of states) await removeTree(join(dataDir, 'state', name), userns);
  for (const name of dead(join(dataDir, 'rootfs'))) {
    await removeTree(join(dataDir, 'rootfs', name), userns);
    rootfs++;
  }
  const blobs = dead(join(dataDir, 'images', 'tmp'));
  for (const name of blobs) rmSync(join(dataDir, 'images', 'tmp', name), { force: true });
  return { bundles, states: states.length, rootfs, blobs: blobs.length };
}
