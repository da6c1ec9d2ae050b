import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfigFile } from '../../gateway/config.js';
import { REDACT_PATHS, startGateway, type RunningGateway } from '../../gateway/main.js';
import { waitFor } from './ports.js';
import { tempDir } from './tmp.js';

/**
 * A gateway started in-process from a real config file and policy file, on a port
 * chosen at run time, with its JSON log captured for assertions.
 */
export interface TestGateway {
  readonly running: RunningGateway;
  /** host:port, as clients write it. */
  readonly host: string;
  readonly url: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

export interface TestGatewayOptions {
  /** YAML lines of the `upstreams:` list (without the key). */
  readonly upstreamsYaml: string;
  /** The policy file text; key paths are relative to it. */
  readonly policy: string;
  /** Its file name (default policy.yaml; a .json name is read as containers-policy.json). */
  readonly policyFile?: string;
  /** Files to write next to the policy (keys), by name (a relative path: `truststore/x509/ca/acme/root.crt`). */
  readonly files?: Record<string, string | Buffer>;
  readonly extraConfig?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** An existing data directory to use (kept when the gateway stops), e.g. to restart on the same data. */
  readonly dataDir?: string;
  /** A port to listen on (default: one chosen at run time), e.g. to restart where clients already point. */
  readonly port?: number;
}

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const dir = tempDir('portcullis-gw-');
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(dirname(join(dir.path, name)), { recursive: true });
    writeFileSync(join(dir.path, name), content);
  }
  const policyFile = opts.policyFile ?? 'policy.yaml';
  writeFileSync(join(dir.path, policyFile), opts.policy);
  const config = [
    `listen: 127.0.0.1:${opts.port ?? 0}`,
    `dataDir: ${JSON.stringify(opts.dataDir ?? 'data')}`,
    `policy: ${policyFile}`,
    'logLevel: info',
    opts.extraConfig ?? '',
    'upstreams:',
    opts.upstreamsYaml,
  ].join('\n');
  writeFileSync(join(dir.path, 'config.yaml'), config);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink);
  const running = await startGateway(loadConfigFile(join(dir.path, 'config.yaml')), {
    logger,
    env: opts.env ?? process.env,
  }).catch((err: unknown) => {
    dir.cleanup();
    throw err;
  });
  return {
    running,
    host: `127.0.0.1:${running.port}`,
    url: running.url,
    dir: dir.path,
    dataDir: opts.dataDir ?? join(dir.path, 'data'),
    logs,
    async stop() {
      await running.close();
      dir.cleanup();
    },
  };
}

/**
 * Every file under the gateway's store with its size and hash: compare before and
 * after. Taken once no blob fill is in flight (a fill commits just after its last
 * byte has gone out, and a failed one removes its staged file as it ends).
 */
export async function storeSnapshot(gw: TestGateway): Promise<Record<string, string>> {
  await waitFor(async () => gw.running.gateway.blobs.fillsInFlight === 0, 'blob fills to settle');
  const root = join(gw.dataDir, 'store');
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(root, p)] = `${statSync(p).size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(root);
  return out;
}

export function decisionLogs(g: TestGateway): Record<string, unknown>[] {
  return g.logs.filter((l) => l.event === 'decision');
}
