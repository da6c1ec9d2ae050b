import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './peers.js';
import { tempDir } from './tmp.js';

/** The built secure-run CLI, run asynchronously (tests keep an in-process gateway answering). */
export const SECURE_RUN_CLI = fileURLToPath(new URL('../../bin/secure-run.js', import.meta.url));

export interface SecureRunHome {
  readonly home: { path: string; cleanup: () => void };
  readonly env: NodeJS.ProcessEnv;
  sr(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }>;
}

/** A private settings and data directory for secure-run, and a runner for the CLI with it. */
export function secureRunHome(): SecureRunHome {
  const home = tempDir('portcullis-home-');
  const env = { ...process.env, XDG_CONFIG_HOME: join(home.path, 'config'), XDG_DATA_HOME: join(home.path, 'data') };
  return {
    home,
    env,
    async sr(...args) {
      // As a user runs it: the file itself, through its #! line (never `node FILE ARGS`).
      const r = await run(SECURE_RUN_CLI, args, { env, allowFail: true });
      return { status: r.code, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

/** The fingerprint a gateway publishes for its attestation key. */
export async function gatewayFingerprint(gatewayUrl: string): Promise<string> {
  return ((await (await fetch(`${gatewayUrl}/v2/_portcullis/gateway.json`)).json()) as { fingerprint: string })
    .fingerprint;
}
