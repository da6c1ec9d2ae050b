#!/usr/bin/env -S node --
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { OciError, UpstreamError } from '../oci/errors.js';
import { RunnerError } from '../runner/errors.js';
import { UnpackError } from '../runner/unpack/errors.js';
import { runCommand, trustCommand, verifyCommand, type RunFlags } from '../runner/main.js';

/**
 * Entry point of `secure-run`, the rootless launcher that only starts images with a
 * valid gateway attestation for their exact digest. Exit codes: 0 ok, 125 refused
 * or failed before anything ran, 2 usage.
 */
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
// A reader that went away (`secure-run doctor | head`) ends the output, not the program with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
const io = { out: (l: string) => process.stdout.write(`${l}\n`), err: (l: string) => process.stderr.write(`${l}\n`) };

const collect = (v: string, all: string[]) => [...all, v];
const program = new Command('secure-run')
  .description('Run only container images that carry a valid attestation from your trusted Portcullis gateway.')
  .version(pkg.version, '-V, --version', 'print the version')
  .usage('[options] IMAGE [COMMAND [ARG...]]  |  secure-run trust|verify ...')
  .argument('[image]', 'image reference, e.g. ghcr.io/team/app:1')
  .argument('[command...]', "command and arguments (replace the image's Cmd)")
  .option('-e, --env <KEY=VALUE>', 'set an environment variable (KEY alone: take it from here)', collect, [])
  .option('--env-file <file>', 'read KEY=VALUE lines from a file', collect, [])
  .option('-v, --volume <SRC:DST[:ro]>', 'bind-mount an absolute host path', collect, [])
  .option('-w, --workdir <dir>', 'working directory inside the container')
  .option('-u, --user <user[:group]>', 'user (name or uid) inside the container')
  .option('--entrypoint <path>', 'replace the image\'s entrypoint ("" for none)')
  .option('-i, --interactive', 'keep standard input attached')
  .option('-t, --tty', 'allocate a terminal')
  .option(
    '--network <mode>',
    "none (the container's own loopback only) or slirp[:allow_host_loopback=true] (user-mode networking with slirp4netns)",
    'none',
  )
  .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-arch image')
  .addOption(
    new Option('--pull <when>', 'pull from the gateway').choices(['always', 'missing', 'never']).default('missing'),
  )
  .addOption(
    new Option('--runtime <name>', 'runtime: crun, runc, or bwrap').choices(['crun', 'runc', 'bwrap']).default('crun'),
  )
  .addOption(
    new Option(
      '--userns <mode>',
      'ids for a user: auto (your subordinate ids from /etc/subuid when you have them) or single (only your own id)',
    )
      .choices(['auto', 'single'])
      .default('auto'),
  )
  .option('--read-only', 'read-only root filesystem (the default)')
  .option('--writable-root', 'let the container write to its root filesystem (a private copy, removed afterwards)')
  .option('--keep-setuid', 'keep setuid/setgid bits from the image')
  .option('--max-age <duration>', 'oldest acceptable gateway attestation (30d, 12h, …)', '30d')
  .passThroughOptions()
  .enablePositionalOptions()
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (image: string | undefined, command: string[], flags: RunFlags) => {
    if (image === undefined) {
      program.help();
      return;
    }
    process.exitCode = await runCommand(image, command, flags, io);
  });

program
  .command('trust')
  .description("fetch a gateway's public key, show its fingerprint and pin it")
  .argument('<gateway-url>', 'the gateway, e.g. https://gateway.example:5000')
  .option('--fingerprint <sha256:hex>', 'pin only if the key has this fingerprint (for scripts)')
  .option('-y, --yes', 'pin without asking (trust on first use)')
  .option('--ca <file>', "a CA certificate (PEM) for the gateway's https, besides the system store; kept with the pin")
  .action(async (url: string, opts: { fingerprint?: string; yes?: boolean; ca?: string }) => {
    process.exitCode = await trustCommand(url, opts, io);
  });

program
  .command('doctor')
  .description('check this machine for rootless containers and explain each fix')
  .option('--json', 'print the findings as JSON')
  .action(async (opts: { json?: boolean }) => {
    // Loaded only here: every run pays for what the entry point imports.
    const { defaultDoctorInput, diagnose, renderFindings } = await import('../runner/doctor.js');
    const findings = diagnose(defaultDoctorInput());
    if (opts.json) io.out(JSON.stringify(findings));
    else for (const line of renderFindings(findings)) io.out(line);
    process.exitCode = findings.some((f) => f.status === 'fail') ? 1 : 0;
  });

program
  .command('verify')
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
  const coded =
    err instanceof RunnerError || err instanceof OciError || err instanceof UpstreamError || err instanceof UnpackError;
  const reason = err instanceof RunnerError && err.reason !== undefined ? ` ${err.reason}` : '';
  io.err(`secure-run: ${(err as Error).message} [${coded ? err.code : 'FAILED'}${reason}]`);
  process.exit(125);
}
