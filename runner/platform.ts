import { RunnerError } from './errors.js';

/** The platform to pick from a multi-arch image: this machine's, or one the user names. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split('/');
  if (!os || !architecture)
    throw new RunnerError('IMAGE_INVALID', `platform must be os/arch[/variant], not ${JSON.stringify(text)}`);
  return { os, architecture, variant };
}
