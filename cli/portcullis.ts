#!/usr/bin/env -S node --
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { LoadError } from '../policies/errors.js';
import { formatDiagnostic } from '../policies/diagnostics.js';
import { lintPolicyFiles } from './policy-lint.js';
import { policyExplain, policyTest, tagsCommand } from './policy-tools.js';
import { POLICY_SCHEMA } from '../policies/schema.js';
import { runServe } from './serve.js';
import { fsckCommand } from './fsck.js';
import { gcCommand } from './gc.js';
import { InitError, initGateway, issueClientCertificate, renewCertificate } from '../gateway/init.js';

/** Entry point of `portcullis`. Exit codes: 0 ok, 1 findings or failure, 2 usage. */
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('portcullis')
  .description(
    'A verifying OCI pull-through gateway: serves an image only after checking who signed that exact digest.',
  )
  .version(pkg.version, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command('serve')
  .description('run the gateway (without --config: 127.0.0.1:5000, ./data, Docker Hub upstream, reject everything)')
  .option('-c, --config <file>', 'gateway config file (YAML)')
  .option('--listen <host:port>', 'override the listen address')
  .option('--data-dir <dir>', 'override the data directory')
  .action(async (opts: { config?: string; listen?: string; dataDir?: string }) => {
    await runServe({
      configPath: opts.config,
      listen: opts.listen,
      dataDir: opts.dataDir === undefined ? undefined : resolve(opts.dataDir),
    });
  });

program
  .command('init')
  .description('write a starter config and policy, the gateway signing key, and a local CA with a TLS certificate')
  .argument('[dir]', 'directory to write into', '.')
  .option('--host <name...>', 'extra host names or addresses for the TLS certificate')
  .option('--keep-ca-key', 'keep tls/ca.key (by default the CA key is discarded once the server certificate is signed)')
  .action((dir: string, opts: { host?: string[]; keepCaKey?: boolean }) => {
    const r = initGateway(dir, { hosts: opts.host ?? [], keepCaKey: opts.keepCaKey === true });
    process.stdout.write(`wrote ${r.files.length} files under ${r.dir}\n${r.files.map((f) => `  ${f}`).join('\n')}\n`);
    process.stdout.write(
      `start it with: portcullis serve --config ${r.dir}/portcullis.yaml\nclients must trust ${r.caCert} (see README.md, "TLS")\n`,
    );
  });

program
  .command('cert')
  .description(
    'issue a new TLS server certificate (new host names) for a directory made by init: signed by the kept CA key, or by a new CA',
  )
  .argument('[dir]', 'the directory init wrote', '.')
  .option('--host <name...>', 'host names or addresses for the certificate, besides localhost and this machine')
  .option('--keep-ca-key', 'when a new CA is made, keep its key as tls/ca.key (for the next cert)')
  .action((dir: string, opts: { host?: string[]; keepCaKey?: boolean }) => {
    const r = renewCertificate(dir, { hosts: opts.host ?? [], keepCaKey: opts.keepCaKey === true });
    process.stdout.write(`wrote ${r.files.map((f) => `\n  ${f}`).join('')}\nfor ${r.hosts.join(', ')}\n`);
    process.stdout.write(
      r.newCa
        ? `the CA key was not kept, so a new CA signed it: clients must now trust the new ${r.caCert}; restart the gateway\n`
        : `signed by the kept CA: clients that trust ${r.caCert} trust it; restart the gateway\n`,
    );
  });

program
  .command('client-cert')
  .description(
    'issue a TLS client certificate for one user (tls.clientCa), signed by the CA key kept with init --keep-ca-key',
  )
  .argument('[dir]', 'the directory init wrote', '.')
  .requiredOption('--user <name>', 'the user the certificate signs in (its CN), as clientAuth.access names users')
  .option('--out <dir>', 'where to write USER.key and USER.crt (default: DIR/clients)')
  .option('--days <n>', 'how long it is valid (1-825)', '365')
  .action((dir: string, opts: { user: string; out?: string; days: string }) => {
    const r = issueClientCertificate(dir, {
      user: opts.user,
      days: /^\d{1,4}$/.test(opts.days) ? Number(opts.days) : Number.NaN,
      ...(opts.out !== undefined ? { out: opts.out } : {}),
    });
    process.stdout.write(`wrote\n  ${r.key}\n  ${r.cert}\nvalid until ${r.notAfter.toISOString()}\n`);
  });

const policy = program.command('policy').description('work with policy files');
policy
  .command('lint')
  .description('check policy files; print every problem as file:line:column and exit 1 if there is any')
  .argument('<files...>', 'policy files')
  .action(async (files: string[]) => {
    process.exitCode = await lintPolicyFiles(files, (line) => process.stdout.write(`${line}\n`));
  });

policy
  .command('test')
  .description(
    'evaluate a policy live against images in their registries (or an OCI layout), without serving anything; exit 0 if all are admitted, 1 if one is denied, 2 on errors',
  )
  .argument('<images...>', 'image references, e.g. registry.example.com/team/app:1')
  .requiredOption('-p, --policy <file>', 'the policy file (YAML, or a containers-policy.json)')
  .option('-c, --config <file>', 'take upstream URLs, credentials and lookaside settings from this gateway config')
  .option('--plain-http', 'talk plain HTTP to registries that are not in a config (local test registries)')
  .option('--lookaside <url>', 'where GPG signatures are published (registries.d lookaside)')
  .option(
    '--layout <dir>',
    'read images from this OCI layout directory instead (IMAGE still names them: registry/repo:TAG)',
  )
  .option('--json', 'print the decisions as JSON')
  .action(
    async (
      images: string[],
      opts: {
        policy: string;
        config?: string;
        plainHttp?: boolean;
        lookaside?: string;
        layout?: string;
        json?: boolean;
      },
    ) => {
      process.exitCode = await policyTest(images, opts, (line) => process.stdout.write(`${line}\n`));
    },
  );

policy
  .command('explain')
  .description('why the gateway admitted or denied a digest or reference, from its decision log')
  .argument('<digest-or-reference>', 'sha256:… or registry/repo:tag or registry/repo@sha256:…')
  .requiredOption('-c, --config <file>', 'the gateway config (its data directory holds the decision log)')
  .option('--limit <n>', 'how many decisions to show', (v) => Number(v), 20)
  .option('--json', 'print the decisions as JSON')
  .action(async (what: string, opts: { config: string; limit: number; json?: boolean }) => {
    process.exitCode = await policyExplain(what, opts, (line) => process.stdout.write(`${line}\n`));
  });

policy
  .command('schema')
  .description('print the JSON Schema of the policy format (for editors and CI)')
  .action(() => {
    process.stdout.write(`${JSON.stringify(POLICY_SCHEMA, null, 2)}\n`);
  });

const tags = program.command('tags').description('tags pinned by rules with tags: pin');
tags
  .command('list')
  .description('list pinned tags (and where the upstream tag points now, when it moved)')
  .argument('[repository]', 'only this repository (registry/repo)')
  .requiredOption('-c, --config <file>', 'the gateway config')
  .action(async (repository: string | undefined, opts: { config: string }) => {
    process.exitCode = await tagsCommand('list', opts.config, repository, (line) => process.stdout.write(`${line}\n`));
  });
tags
  .command('release')
  .description('release a pinned tag: its next pull verifies and pins what the upstream tag points at then')
  .argument('<reference>', 'registry/repo:tag')
  .requiredOption('-c, --config <file>', 'the gateway config')
  .action(async (reference: string, opts: { config: string }) => {
    process.exitCode = await tagsCommand('release', opts.config, reference, (line) =>
      process.stdout.write(`${line}\n`),
    );
  });

program
  .command('fsck')
  .description(
    'check every stored blob against its digest and the admissions against the store; exit 1 if anything is wrong',
  )
  .requiredOption('-c, --config <file>', 'the gateway config')
  .option(
    '--repair',
    'delete blobs that do not hash to their digest, withdraw admitted attachments that are not stored',
  )
  .option('--json', 'print the report as JSON')
  .action(async (opts: { config: string; repair?: boolean; json?: boolean }) => {
    process.exitCode = await fsckCommand(opts, (line) => process.stdout.write(`${line}\n`));
  });

program
  .command('gc')
  .description(
    'retire admissions by the retention rules and delete blobs nothing uses (online; one replica at a time in a fleet)',
  )
  .requiredOption('-c, --config <file>', 'the gateway config')
  .option('--dry-run', 'list what would be retired and deleted, and change nothing')
  .option('--json', 'print the report as JSON')
  .action(async (opts: { config: string; dryRun?: boolean; json?: boolean }) => {
    process.exitCode = await gcCommand(opts, (line) => process.stdout.write(`${line}\n`));
  });

program
  .command('version')
  .description('print the version')
  .action(() => {
    process.stdout.write(`portcullis ${pkg.version}\n`);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof LoadError) {
    for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
    process.exit(1);
  }
  if (err instanceof InitError) {
    process.stderr.write(`portcullis ${process.argv[2] ?? ''}: ${err.message} [${err.code}]\n`);
    process.exit(1);
  }
  // The operator commands (explain, tags, test, fsck) fail with a sentence, not a stack.
  const args = process.argv.slice(2);
  if (['policy', 'tags', 'fsck', 'gc'].includes(args[0] ?? '') && err instanceof Error) {
    process.stderr.write(
      `portcullis ${args.slice(0, ['fsck', 'gc'].includes(args[0] ?? '') ? 1 : 2).join(' ')}: ${err.message}\n`,
    );
    process.exit(2);
  }
  throw err;
}
