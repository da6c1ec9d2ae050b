import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { RegistryClient } from '../oci/registry-client/client.js';
import { loadPolicyFile, rejectEverythingPolicy } from '../policies/loader.js';
import type { CompiledPolicy } from '../policies/model.js';
import { readSecret, type GatewayConfig } from './config.js';
import { buildApp, type GatewayApp } from './http/app.js';
import { createMetrics } from './metrics.js';
import { SqliteMetadataStore } from './metadata/sqlite-metadata-store.js';
import { FsBlobStore } from './store/fs-blob-store.js';
import { Upstreams, type Upstream } from './upstreams.js';

/**
 * The gateway's composition root: the only place that reads the environment and
 * files and builds concrete drivers (filesystem store, SQLite metadata).
 */
export interface RunningGateway {
  readonly url: string;
  readonly port: number;
  readonly gateway: GatewayApp;
  readonly logger: Logger;
  close(): Promise<void>;
}

export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', '*.password', 'password',
];

export function createLogger(level: GatewayConfig['logLevel'], destination?: NodeJS.WritableStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'portcullis' } }, destination ?? process.stdout);
}

export async function startGateway(config: GatewayConfig, options: { env?: NodeJS.ProcessEnv; logger?: Logger; embeddedDefaults?: boolean } = {}): Promise<RunningGateway> {
  const env = options.env ?? process.env;
  const logger = options.logger ?? createLogger(config.logLevel);
  const policy: CompiledPolicy = config.policy ? loadPolicyFile(config.policy) : rejectEverythingPolicy();
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await FsBlobStore.open(join(config.dataDir, 'store'));
  const metadata = new SqliteMetadataStore(join(config.dataDir, 'metadata.db'));
  const metrics = createMetrics();
  const upstreamList: Upstream[] = config.upstreams.map((u) => ({
    config: u,
    client: new RegistryClient({
      baseUrl: u.url,
      credentials: u.username !== undefined && u.password !== undefined ? { username: u.username, password: readSecret(u.password, env) } : undefined,
      allowedRealmOrigins: u.authRealms,
      allowedRedirectOrigins: u.redirectOrigins,
      timeouts: u.timeouts,
      observe: (o) => metrics.upstreamLatency.observe({ upstream: u.name, method: o.method, status: String(o.status) }, o.ms / 1000),
    }),
  }));
  const gateway = buildApp({
    upstreams: new Upstreams(upstreamList), store, metadata, policy: () => policy, limits: config.limits,
    tagTtlSeconds: config.tagTtlSeconds, logger, metrics,
  });
  await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
  const address = gateway.app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host}:${port}`;
  logger.info({
    event: 'started', url, config: config.source, dataDir: config.dataDir, policy: policy.source, policyDigest: policy.digest.text,
    upstreams: config.upstreams.map((u) => ({ name: u.name, prefix: u.prefix, url: u.url, dockerHubMirror: u.dockerHubMirror })),
  }, options.embeddedDefaults ? 'portcullis is running on embedded defaults: Docker Hub as the only upstream and a reject-everything policy (pass --config FILE)' : 'portcullis is running');
  if (config.upstreams.length === 0) logger.warn('no upstreams are configured: every pull will answer NAME_UNKNOWN');
  return {
    url, port, gateway, logger,
    async close() {
      await gateway.app.close();
      await Promise.all(upstreamList.map((u) => u.client.close()));
      await metadata.close();
    },
  };
}
