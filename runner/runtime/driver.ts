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
  /** root: real root starts the runtime; user: an unprivileged user, through its own user namespace. */
  readonly mode: 'root' | 'user';
  /** A user namespace with the user's subordinate ids, prepared by secure-run: the runtime runs in it as its root. */
  readonly userns?: UserNamespace | undefined;
}

export interface RuntimeDriver {
  readonly name: 'crun' | 'runc' | 'bwrap';
  run(req: RunRequest): Promise<number>;
}
