import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { run } from './peers.js';

/**
 * The real cosign (2.5) as signer and verifier. Its state lives in a throwaway HOME;
 * signing never uploads to a transparency log and verification never asks one, so
 * nothing leaves 127.0.0.1.
 */
export interface CosignKey {
  readonly key: string;
  readonly pub: string;
  readonly password: string;
  readonly home: string;
}

export function cosignEnv(home: string, password: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: home, COSIGN_PASSWORD: password, TUF_ROOT: join(home, '.sigstore'), ...extra };
}

export async function cosignKeyPair(dir: string, name: string): Promise<CosignKey> {
  const home = join(dir, `home-${name}`);
  mkdirSync(home, { recursive: true });
  const password = `pw-${name}`;
  await run('cosign', ['generate-key-pair', '--output-key-prefix', join(dir, name)], {
    env: cosignEnv(home, password),
    cwd: dir,
  });
  return { key: join(dir, `${name}.key`), pub: join(dir, `${name}.pub`), password, home };
}

/** Signs `ref` (host:port/repo@sha256:…), writing the `sha256-<hex>.sig` tag. */
export async function cosignSign(
  k: CosignKey,
  ref: string,
  opts: { identity?: string; registryCreds?: { user: string; password: string } } = {},
): Promise<void> {
  const args = ['sign', '--key', k.key, '--tlog-upload=false', '-y'];
  if (opts.identity) args.push('--sign-container-identity', opts.identity);
  if (opts.registryCreds)
    args.push('--registry-username', opts.registryCreds.user, '--registry-password', opts.registryCreds.password);
  args.push(ref);
  await run('cosign', args, { env: cosignEnv(k.home, k.password) });
}

export async function cosignVerify(
  k: CosignKey,
  ref: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(
    'cosign',
    ['verify', '--key', k.pub, '--insecure-ignore-tlog', '--allow-http-registry', '--allow-insecure-registry', ref],
    { env: cosignEnv(k.home, k.password), allowFail: true },
  );
}
