import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseNetwork } from './runtime/network.js';
import { RunnerError } from './errors.js';
import { hostPlatform, parsePlatform } from './platform.js';
import { assertPrivate, readTrust, runnerPaths, type Trust } from './settings.js';
import { ImageCache } from './image-cache.js';
import { launch } from './launch.js';
import type { PullPolicy } from './pull.js';

/**
 * secure-run's composition root: the only place that reads the environment, the
 * terminal and the user's files.
 */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export async function trustCommand(
  url: string,
  opts: { fingerprint?: string; yes?: boolean; ca?: string },
  io: Output,
): Promise<number> {
  const paths = runnerPaths();
  const { fetchGatewayKey, pinKey } = await import('./trust.js');
  let previous: Trust | undefined;
  try {
    previous = readTrust(paths);
  } catch {
    previous = undefined;
  }
  let caPem: string | undefined;
  if (opts.ca !== undefined) {
    try {
      caPem = readFileSync(opts.ca, 'utf8');
    } catch (err) {
      throw new RunnerError(
        'OPTION_INVALID',
        `--ca ${opts.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  } else if (previous?.gateway === new URL(url).origin) {
    caPem = previous.caPem;
  }
  const offered = await fetchGatewayKey(url, io.err, caPem);
  io.out(`gateway ${offered.gateway} offers key ${offered.fingerprint}`);
  if (previous && previous.fingerprint !== offered.fingerprint) {
    // Re-pinning (a key rotation, or another gateway): say what is replaced.
    io.out(`this replaces the pinned key ${previous.fingerprint} of ${previous.gateway} (pinned ${previous.pinnedAt})`);
    if (previous.gateway === offered.gateway && offered.previousFingerprints?.includes(previous.fingerprint))
      io.out(
        'the gateway says it is rotating from that key to this one (it still signs with both); confirm the new fingerprint with its operator',
      );
  }
  let confirmed = opts.yes === true;
  if (opts.fingerprint === undefined && !confirmed) {
    if (!process.stdin.isTTY)
      throw new RunnerError(
        'NOT_TRUSTED',
        "not a terminal: pass --fingerprint sha256:… (compare it with the gateway's start-up log)",
      );
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    try {
      confirmed = /^y(es)?$/i.test(
        (await rl.question('Is this the key the gateway logged at start-up? Pin it? [y/N] ')).trim(),
      );
    } finally {
      rl.close();
    }
  }
  const trust = pinKey(paths, offered, { expected: opts.fingerprint, confirmed });
  io.out(`pinned ${trust.fingerprint} for ${trust.gateway} in ${paths.trustFile}`);
  return 0;
}

export async function verifyCommand(
  image: string,
  opts: { platform?: string; maxAge: string; json?: boolean },
  io: Output,
): Promise<number> {
  const paths = runnerPaths();
  const trust = readTrust(paths);
  mkdirSync(paths.dataDir, { recursive: true, mode: 0o711 });
  assertPrivate(paths.dataDir);
  // The check of a run, exactly: the same function, online, with the same cache (and so the same rollback rule).
  const { attestedManifest } = await import('./pull.js');
  const a = await attestedManifest(trust, new ImageCache(join(paths.dataDir, 'images')), image, {
    platform: opts.platform ? parsePlatform(opts.platform) : hostPlatform(),
    maxAgeMs: parseDuration(opts.maxAge),
    pull: 'always',
  });
  const v = { image: { manifestDigest: a.manifestDigest, indexDigest: a.indexDigest }, summary: a.summary };
  if (opts.json) {
    io.out(
      JSON.stringify({
        image,
        digest: v.image.manifestDigest.text,
        index: v.image.indexDigest?.text,
        verified: v.summary.timeVerified.toISOString(),
        policy: v.summary.policyDigest,
        resource: v.summary.resourceUri,
      }),
    );
  } else {
    io.out(
      `${image} → ${v.image.manifestDigest.text}: attested by ${trust.gateway} (key ${trust.fingerprint}) at ${v.summary.timeVerified.toISOString()}, policy ${v.summary.policyDigest ?? 'unknown'}`,
    );
  }
  return 0;
}

/** `90d`, `12h`, `30m`, `45s`. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})([dhms])$/.exec(text.trim());
  if (!m) throw new RunnerError('IMAGE_INVALID', `not a duration: ${JSON.stringify(text)} (use 30d, 12h, 30m or 45s)`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return Number(m[1]) * unit;
}

export interface RunFlags {
  env: string[];
  envFile: string[];
  volume: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  interactive?: boolean;
  tty?: boolean;
  network: string;
  platform?: string;
  pull: PullPolicy;
  runtime: 'crun' | 'runc' | 'bwrap';
  readOnly?: boolean;
  writableRoot?: boolean;
  keepSetuid?: boolean;
  maxAge: string;
  userns: 'auto' | 'single';
}

export async function runCommand(image: string, command: string[], f: RunFlags, _io: Output): Promise<number> {
  if (f.readOnly && f.writableRoot)
    throw new RunnerError('IMAGE_INVALID', '--read-only and --writable-root contradict each other');
  return launch(
    runnerPaths(),
    {
      image,
      command,
      env: f.env,
      envFiles: f.envFile,
      volumes: f.volume,
      workdir: f.workdir,
      user: f.user,
      entrypoint: f.entrypoint,
      interactive: f.interactive === true,
      tty: f.tty === true,
      platform: f.platform,
      pull: f.pull,
      runtime: f.runtime,
      readOnly: f.writableRoot !== true,
      maxAgeMs: parseDuration(f.maxAge),
      keepSetuid: f.keepSetuid === true,
      maxLayerBytes: 16 * 1024 ** 3,
      userns: f.userns,
      network: parseNetwork(f.network),
    },
    process.env,
  );
}
