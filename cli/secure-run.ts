#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { OciError, UpstreamError } from '../oci/errors.js';
import { RunnerError } from '../runner/errors.js';
import { trustCommand, verifyCommand } from '../runner/main.js';

/**
 * Entry point of `secure-run`, the rootless launcher that only starts images with a
 * valid gateway attestation for their exact digest. Exit codes: 0 ok, 125 refused
 * or failed before anything ran, 2 usage.
 */
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const io = { out: (l: string) => process.stdout.write(`${l}\n`), err: (l: string) => process.stderr.write(`${l}\n`) };

const program = new Command('secure-run')
  .description('Run only container images that carry a valid attestation from your trusted Portcullis gateway.')
  .version(pkg.version, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program.command('trust')
  .description('fetch a gateway\'s public key, show its fingerprint and pin it')
  .argument('<gateway-url>', 'the gateway, e.g. https://gateway.example:5000')
  .option('--fingerprint <sha256:hex>', 'pin only if the key has this fingerprint (for scripts)')
  .option('-y, --yes', 'pin without asking (trust on first use)')
  .action(async (url: string, opts: { fingerprint?: string; yes?: boolean }) => {
    process.exitCode = await trustCommand(url, opts, io);
  });

program.command('verify')
  .description('resolve IMAGE through the trusted gateway and check its attestation, without running it')
  .argument('<image>', 'image reference, e.g. ghcr.io/team/app:1')
  .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-arch image')
  .option('--max-age <duration>', 'oldest acceptable attestation (30d, 12h, …)', '30d')
  .option('--json', 'print the result as JSON')
  .action(async (image: string, opts: { platform?: string; maxAge: string; json?: boolean }) => {
    process.exitCode = await verifyCommand(image, opts, io);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Every failure before the container runs is a refusal: say what, never a stack.
  const code = err instanceof RunnerError || err instanceof OciError || err instanceof UpstreamError ? err.code : 'FAILED';
  io.err(`secure-run: ${(err as Error).message} [${code}]`);
  process.exit(125);
}
