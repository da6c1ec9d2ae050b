import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/**
 * `portcullis serve` as a process of its own (so a test can SIGKILL it): resolves
 * once its "started" line names its URL. Every JSON log line is kept, and `onLine`
 * sees each as it comes.
 */
export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  readonly lines: Record<string, unknown>[];
  /** Resolves when the process has exited (at once if it has). */
  exited(): Promise<void>;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
}

const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));

export function startGatewayProcess(
  configPath: string,
  opts: { onLine?: (entry: Record<string, unknown>) => void; timeoutMs?: number } = {},
): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--', CLI, 'serve', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const lines: Record<string, unknown>[] = [];
  const exit = new Promise<void>((r) => child.once('exit', () => r()));
  const exited = () => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : exit);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the gateway did not start within ${opts.timeoutMs ?? 20_000} ms\n${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited (${code}) before it started\n${stderr}`));
    });
    createInterface({ input: child.stdout as Readable }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (lines.length < 100_000) lines.push(entry);
      opts.onLine?.(entry);
      if (entry.event === 'started' && typeof entry.url === 'string') {
        clearTimeout(timer);
        const url = entry.url;
        resolve({
          child,
          url,
          port: Number(new URL(url).port),
          lines,
          exited,
          async kill() {
            child.kill('SIGKILL');
            await exited();
          },
        });
      }
    });
  });
}
