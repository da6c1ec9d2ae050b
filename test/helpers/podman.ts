import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunResult } from './peers.js';
import { tempDir } from './tmp.js';

/**
 * The real podman with throwaway storage, configuration and policy, so a test changes
 * nothing of the machine's containers state.
 */
export interface TestPodman {
  pull(ref: string): Promise<RunResult>;
  /** `podman login` to a plain-HTTP registry, the password on stdin; credentials kept in this podman's auth file. */
  login(host: string, user: string, password: string): Promise<RunResult>;
  /** `podman image inspect` of a pulled image: its digest. */
  digestOf(ref: string): Promise<string>;
  cleanup(): void;
}

/**
 * `policy`: a containers-policy.json to pull under (default: accept anything);
 * `registriesD`: registries.d YAML (lookaside and sigstore-attachment settings).
 */
export function testPodman(registriesConf: string, opts: { policy?: string; registriesD?: string } = {}): TestPodman {
  const dir = tempDir('portcullis-podman-');
  const p = (name: string) => join(dir.path, name);
  for (const d of ['home', 'root', 'runroot', 'tmp', 'vartmp']) mkdirSync(p(d));
  writeFileSync(p('registries.conf'), registriesConf);
  writeFileSync(p('auth.json'), '{}', { mode: 0o600 });
  writeFileSync(p('policy.json'), opts.policy ?? JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  if (opts.registriesD !== undefined) {
    // containers/image reads $HOME/.config/containers/registries.d when it exists.
    mkdirSync(p('home/.config/containers/registries.d'), { recursive: true });
    writeFileSync(p('home/.config/containers/registries.d/default.yaml'), opts.registriesD);
  }
  const env = {
    PATH: process.env.PATH,
    CONTAINERS_REGISTRIES_CONF: p('registries.conf'),
    HOME: p('home'),
    TMPDIR: p('vartmp'),
    // podman login writes here, not to the machine's /run/containers.
    REGISTRY_AUTH_FILE: p('auth.json'),
  };
  const base = [
    '--root',
    p('root'),
    '--runroot',
    p('runroot'),
    '--storage-driver',
    'vfs',
    '--tmpdir',
    p('tmp'),
    '--events-backend',
    'none',
    '--cgroup-manager',
    'cgroupfs',
  ];
  return {
    pull: (ref) =>
      run('podman', [...base, 'pull', '--signature-policy', p('policy.json'), ref], { env, allowFail: true }),
    login: (host, user, password) =>
      run('podman', [...base, 'login', '--tls-verify=false', '--username', user, '--password-stdin', host], {
        env,
        allowFail: true,
        input: `${password}\n`,
      }),
    async digestOf(ref) {
      const r = await run('podman', [...base, 'image', 'inspect', '--format', '{{.Digest}}', ref], { env });
      return r.stdout.trim();
    },
    cleanup: () => {
      void run('podman', [...base, 'system', 'reset', '--force'], { env, allowFail: true }).finally(() =>
        dir.cleanup(),
      );
    },
  };
}
