import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

/**
 * Watches the files a policy reads (the policy file and the key files it names) and
 * calls `changed` once they settle after a change. Directories are watched (editors,
 * and Kubernetes ConfigMaps, replace files by renaming), but only events for those
 * files, or for a ConfigMap's `..data` swap, count; and `changed` is called only
 * when one of the files really differs (inode, size, times, following symlinks) from
 * what was seen last. A log file written next to the policy triggers nothing.
 * The file list is taken again on `refresh` (after every reload).
 */
export interface PolicyWatch {
  refresh(): void;
  close(): void;
}

const SETTLE_MS = 200;

export function watchPolicy(files: () => readonly string[], changed: () => void, logger: Logger): PolicyWatch {
  let timer: NodeJS.Timeout | undefined;
  const watchers = new Map<string, FSWatcher>();
  let names = new Map<string, Set<string>>();
  let seen = fingerprint(files());
  const check = (): void => {
    const now = fingerprint(files());
    if (now === seen) return;
    seen = now;
    changed();
  };
  const onEvent = (dir: string, filename: string | Buffer | null): void => {
    const name = filename === null ? null : filename.toString();
    if (name !== null && !names.get(dir)?.has(name) && !name.startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(check, SETTLE_MS);
  };
  const refresh = (): void => {
    const list = files();
    seen = fingerprint(list);
    names = new Map();
    for (const f of list) {
      const dir = dirname(f);
      if (!names.has(dir)) names.set(dir, new Set());
      names.get(dir)?.add(basename(f));
    }
    for (const [dir, w] of watchers) {
      if (!names.has(dir)) {
        w.close();
        watchers.delete(dir);
      }
    }
    for (const dir of names.keys()) {
      if (watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => onEvent(dir, filename));
        w.on('error', (err) => warn(logger, dir, err));
        watchers.set(dir, w);
      } catch (err) {
        warn(logger, dir, err as Error);
      }
    }
  };
  refresh();
  return {
    refresh,
    close: () => {
      clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}

function warn(logger: Logger, dir: string, err: Error): void {
  logger.warn(
    { event: 'policy.watch_failed', dir, err: err.message },
    'cannot watch a policy directory; reload with SIGHUP',
  );
}

function fingerprint(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const st = statSync(f);
        return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch {
        return 'absent';
      }
    })
    .join('|');
}
