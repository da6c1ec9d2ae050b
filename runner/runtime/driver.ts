import type { UserNamespace } from './userns.js';

/**
 * Starting a prepared OCI bundle. One interface, several runtimes (crun by default,
 * runc, and later bwrap), each proven by the same contract suite. A driver returns
 * the container's exit status as a shell would report it (128 + signal number when
 * it was killed) and leaves no container behind.
 */
export interface RunRequest {
  /** Directory holding config.json. */
  readonly bundle: string;
  readonly id: string;
  /** Runtime state directory (the runtime's --root). */
  readonly stateDir: string;
  /** Keep standard input attached (-i). */
  readonly interactive: boolean;
  /**
   * An unprivileged user's namespace, prepared by secure-run: the runtime runs in it
   * as its root. Absent: real root starts the runtime (the spec maps the container
   * to the dedicated id range).
   */
  readonly userns?: UserNamespace | undefined;
  /**
   * Root only: a network namespace (a /proc/PID/ns/net path) the runtime starts in,
   * served by a user-mode network stack; the spec then has no network namespace of its own.
   */
  readonly netns?: string | undefined;
}

export interface RuntimeDriver {
  readonly name: 'crun' | 'runc' | 'bwrap';
  run(req: RunRequest): Promise<number>;
}
