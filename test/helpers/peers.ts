import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Real third-party programs used by the integration tests. A missing one fails the
 * test with the command that installs it; nothing is skipped silently.
 */
const INSTALL: Record<string, string> = {
  'docker-registry': 'apt-get install docker-registry',
  skopeo: 'apt-get install skopeo',
  podman: 'apt-get install podman',
  umoci: 'apt-get install umoci',
  busybox: 'apt-get install busybox-static',
  cosign: 'bash .ci/install-peers (cosign 2.5 from Debian 13, see README "Tests")',
  'sigstore-go-verification': 'bash .ci/install-peers (sigstore-go 0.7.1 from Debian 13, see README "Tests")',
  htpasswd: 'apt-get install apache2-utils',
  gpg: 'apt-get install gnupg',
  curl: 'apt-get install curl',
  gcc: 'apt-get install gcc libc6-dev',
  containerd: 'apt-get install containerd',
  ctr: 'apt-get install containerd',
  dockerd: 'apt-get install docker.io',
  docker: 'apt-get install docker.io',
  kustomize: 'bash .ci/install-peers (kustomize 5.6 from Debian 13, see README "Tests")',
  haproxy: 'apt-get install haproxy',
};

export function peer(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(
    `test peer "${name}" is not installed; install it with: ${INSTALL[name] ?? `apt-get install ${name}`} (or run bash .ci/install-peers)`,
  );
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program with an argv array (never a shell); rejects on a non-zero exit unless allowFail. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; allowFail?: boolean; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  const bin = cmd.includes('/') ? cmd : peer(cmd);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    // A password for --password-stdin: never on the command line.
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const result = { code: code ?? -1, stdout, stderr };
      if (code !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}\n${stderr}`));
      else resolve(result);
    });
  });
}
