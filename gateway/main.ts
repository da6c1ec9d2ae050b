import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { parseSigningKey, publicKeyPem } from '../policies/attestation.js';
import { formatDiagnostic } from '../policies/diagnostics.js';
import { LoadError } from '../policies/errors.js';
import { loadPolicyFile, rejectEverythingPolicy } from '../policies/loader.js';
import { AttestationService, fingerprintOf, type GatewaySigner, type SigningKey } from './attestations.js';
import type { CompiledPolicy } from '../policies/model.js';
import type { GatewayConfig } from './config.js';
import { buildApp, type GatewayApp } from './http/app.js';
import { createMetrics } from './metrics.js';
import { openMetadataStore } from './metadata/open-metadata-store.js';
import { openBlobStore } from './store/open-blob-store.js';
import { RateLimiter } from './auth/rate-limit.js';
import { TokenIssuer } from './auth/tokens.js';
import { ClientAuth } from './auth/client-auth.js';
import { watchPolicy } from './policy-watch.js';
import { SigstoreRoot } from './sigstore-root.js';
import { loadRegistriesD } from './registries-d.js';
import { openUpstream, Upstreams, type Upstream } from './upstreams.js';

/**
 * The gateway's composition root: the only place that reads the environment and
 * files and builds concrete drivers (filesystem store, SQLite metadata).
 */
export interface RunningGateway {
  readonly url: string;
  readonly port: number;
  readonly gateway: GatewayApp;
  readonly logger: Logger;
  /** The policy in force now. */
  policy(): CompiledPolicy;
  /**
   * Loads the policy file again: on success it replaces the running policy at once
   * (decisions made under the old one are made again on their next use); on failure
   * the old policy keeps running and the problems are logged. Resolves to whether it was replaced.
   */
  reloadPolicy(trigger: string): Promise<boolean>;
  close(): Promise<void>;
}

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'headers.authorization',
  '*.password',
  'password',
];

export function createLogger(level: GatewayConfig['logLevel'], destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'portcullis' } },
    destination ?? process.stdout,
  );
}

export async function startGateway(
  config: GatewayConfig,
  options: { env?: NodeJS.ProcessEnv; logger?: Logger; embeddedDefaults?: boolean } = {},
): Promise<RunningGateway> {
  const env = options.env ?? process.env;
  const logger = options.logger ?? createLogger(config.logLevel);
  // A Sigstore trusted root kept fresh over TUF, when configured: keyless rules without their own root use it.
  let onRootChange = (): void => undefined;
  const sigstoreRoot = config.sigstoreTuf
    ? await SigstoreRoot.start({
        ...config.sigstoreTuf,
        dataDir: config.dataDir,
        logger,
        onChange: () => onRootChange(),
      })
    : undefined;
  const compileOptions = () => ({ defaultRoot: sigstoreRoot?.current() });
  let policy: CompiledPolicy = config.policy
    ? await loadPolicyFile(config.policy, compileOptions())
    : await rejectEverythingPolicy();
  for (const note of policy.notes ?? []) logger.info({ event: 'policy.note', policy: policy.source }, note);
  for (const w of policy.warnings ?? [])
    logger.warn({ event: 'policy.warning', policy: policy.source }, formatDiagnostic(w));
  const metrics = createMetrics();
  let reloading: Promise<boolean> = Promise.resolve(false);
  const reloadPolicy = (trigger: string): Promise<boolean> => {
    const policyFile = config.policy;
    if (policyFile === undefined) return Promise.resolve(false);
    reloading = reloading.then(async () => {
      try {
        const next = await loadPolicyFile(policyFile, compileOptions());
        if (next.digest.text === policy.digest.text) {
          metrics.policyReloads.inc({ result: 'unchanged' });
          return false;
        }
        metrics.policyReloads.inc({ result: 'reloaded' });
        const previous = policy.digest.text;
        policy = next;
        for (const note of next.notes ?? []) logger.info({ event: 'policy.note', policy: next.source }, note);
        for (const w of next.warnings ?? [])
          logger.warn({ event: 'policy.warning', policy: next.source }, formatDiagnostic(w));
        logger.info(
          { event: 'policy.reloaded', trigger, policy: next.source, policyDigest: next.digest.text, previous },
          'policy reloaded',
        );
        watcher?.refresh();
        return true;
      } catch (err) {
        metrics.policyReloads.inc({ result: 'failed' });
        const diagnostics = err instanceof LoadError ? err.diagnostics.map(formatDiagnostic) : [(err as Error).message];
        logger.error(
          { event: 'policy.reload_failed', trigger, policy: policyFile, diagnostics, policyDigest: policy.digest.text },
          'the new policy does not load; the previous one keeps running',
        );
        return false;
      }
    });
    return reloading;
  };
  onRootChange = () => void reloadPolicy('sigstore trusted root updated');
  const policyPath = config.policy;
  const watcher =
    policyPath === undefined
      ? undefined
      : watchPolicy(
          () => [resolve(policyPath), ...(policy.keyFiles ?? []).map((k) => resolve(dirname(policyPath), k))],
          () => void reloadPolicy('file change'),
          logger,
        );
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await openBlobStore(config, env);
  const metadata = await openMetadataStore(config, env);
  const registriesD = config.registriesD ? loadRegistriesD(config.registriesD) : undefined;
  const upstreamList: Upstream[] = config.upstreams.map((u) =>
    openUpstream(
      u,
      env,
      registriesD,
      (o) =>
        metrics.upstreamLatency.observe({ upstream: u.name, method: o.method, status: String(o.status) }, o.ms / 1000),
      (state, failures) =>
        state === 'open'
          ? logger.warn(
              { event: 'upstream.circuit_open', upstream: u.name, failures },
              'the upstream is not answering: calls fail at once until a trial call gets through',
            )
          : logger.info({ event: 'upstream.circuit_closed', upstream: u.name }, 'the upstream answers again'),
    ),
  );
  const signer = loadSigner(
    config.attestationKey ?? join(config.dataDir, 'gateway.key'),
    config.attestationKey === undefined,
    config.verifierId,
    config.previousAttestationKeys,
  );
  const attestations = new AttestationService({ store, metadata, signer, now: Date.now });
  if (signer.previous.length > 0)
    logger.info(
      {
        event: 'attestation.rotation',
        gatewayKey: `sha256:${signer.fingerprint}`,
        previousKeys: signer.previous.map((k) => `sha256:${k.fingerprint}`),
      },
      'attestations are signed with the current key and the previous ones until they are removed from attestation.previousKeys',
    );
  if (config.clientAuth?.tokens && config.clientAuth.tokens.realm === undefined && !config.tls)
    logger.warn(
      { event: 'clientAuth.realm' },
      'client tokens are asked for at http://<Host>/v2/_portcullis/token: behind a TLS-terminating proxy, set clientAuth.tokens.realm to its https URL',
    );
  const gateway = buildApp({
    upstreams: new Upstreams(upstreamList),
    store,
    metadata,
    policy: () => policy,
    limits: config.limits,
    tagTtlSeconds: config.tagTtlSeconds,
    renewAfterSeconds: config.renewAfterSeconds,
    logger,
    metrics,
    attestations,
    signer,
    // Replicas share fills only where they share the bytes (an object store) and a database with leases.
    ...(config.clientAuth ? { clientAuth: ClientAuth.load(config.clientAuth) } : {}),
    ...(config.clientAuth?.tokens
      ? {
          tokens: new TokenIssuer(
            signer.key,
            config.clientAuth.tokens.service,
            config.clientAuth.tokens.expiresSeconds,
          ),
          tokenRealm: config.clientAuth.tokens.realm,
        }
      : {}),
    ...(config.rateLimit ? { rateLimiter: new RateLimiter(config.rateLimit) } : {}),
    ...(config.store?.driver === 's3' && config.store.redirectSeconds !== undefined
      ? { blobRedirectSeconds: config.store.redirectSeconds }
      : {}),
    ...(metadata.leases && config.store?.driver === 's3'
      ? { fleet: { leases: metadata.leases, holder: `${hostname()}:${process.pid}:${randomUUID()}` } }
      : {}),
    ...(config.tls
      ? {
          https: {
            cert: readFileSync(config.tls.cert),
            key: readFileSync(config.tls.key),
            ...(config.tls.clientCa
              ? {
                  clientCa: readFileSync(config.tls.clientCa),
                  requireClientCert: config.tls.clientCerts === 'required',
                }
              : {}),
          },
        }
      : {}),
  });
  await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
  const address = gateway.app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `${config.tls ? 'https' : 'http'}://${host}:${port}`;
  logger.info(
    {
      event: 'started',
      url,
      config: config.source,
      gatewayKey: `sha256:${signer.fingerprint}`,
      dataDir: config.dataDir,
      policy: policy.source,
      policyDigest: policy.digest.text,
      upstreams: config.upstreams.map((u) => ({
        name: u.name,
        prefix: u.prefix,
        url: u.url,
        dockerHubMirror: u.dockerHubMirror,
      })),
    },
    options.embeddedDefaults
      ? 'portcullis is running on embedded defaults: Docker Hub as the only upstream and a reject-everything policy (pass --config FILE)'
      : 'portcullis is running',
  );
  if (config.metadata?.driver === 'postgres' && config.store?.driver !== 's3')
    logger.warn(
      { event: 'fleet.store_not_shared' },
      'metadata is shared (PostgreSQL) but blobs are local files: several replicas on this database need one store (store.driver: s3), since attestation envelopes and the attachments the gateway makes live in the store',
    );
  if (config.upstreams.length === 0) logger.warn('no upstreams are configured: every pull will answer NAME_UNKNOWN');
  return {
    url,
    port,
    gateway,
    logger,
    policy: () => policy,
    reloadPolicy,
    async close() {
      watcher?.close();
      sigstoreRoot?.close();
      await reloading;
      // Fills are stopped while the server closes (it waits for the responses that
      // follow them), and once more for any a request past routing started meanwhile.
      const closing = gateway.app.close();
      await gateway.blobs.drain();
      await closing;
      await gateway.blobs.drain();
      await Promise.all(upstreamList.map((u) => u.client.close()));
      await metadata.close();
      await store.close?.();
    },
  };
}

/**
 * The gateway's attestation signing key. A configured key must exist, be ECDSA P-256
 * and be readable by its owner only; the default key is created (0600) on first start.
 */
export function loadSigner(
  path: string,
  createIfMissing: boolean,
  verifierId: string | undefined,
  previousPaths: readonly string[] = [],
): GatewaySigner {
  let pem = readPrivateKeyFile(path);
  if (pem === undefined) {
    if (!createIfMissing)
      throw new LoadError('FILE_UNREADABLE', [
        { file: path, line: 1, column: 1, message: 'the gateway signing key does not exist' },
      ]);
    // Written whole under a temporary name, then linked into place: a crash leaves no
    // half-written key, and of two processes starting together one key wins.
    const fresh = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, fresh, { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
    pem = readPrivateKeyFile(path);
    if (pem === undefined)
      throw new LoadError('FILE_UNREADABLE', [
        { file: path, line: 1, column: 1, message: 'the gateway signing key vanished while it was created' },
      ]);
  }
  const current = signingKeyOf(path, pem);
  const previous = previousPaths.map((p) => {
    const text = readPrivateKeyFile(p);
    if (text === undefined)
      throw new LoadError('FILE_UNREADABLE', [
        {
          file: p,
          line: 1,
          column: 1,
          message: 'a previous gateway signing key (attestation.previousKeys) does not exist',
        },
      ]);
    const k = signingKeyOf(p, text);
    if (k.fingerprint === current.fingerprint)
      throw new LoadError('CONFIG_INVALID', [
        { file: p, line: 1, column: 1, message: 'attestation.previousKeys lists the current signing key' },
      ]);
    return k;
  });
  return {
    ...current,
    previous,
    verifierId: verifierId ?? `urn:portcullis:gateway:sha256:${current.fingerprint}`,
    version: PACKAGE_VERSION,
  };
}

function signingKeyOf(path: string, pem: string): SigningKey {
  const key = parseSigningKey(pem);
  if (typeof key === 'string')
    throw new LoadError('CONFIG_INVALID', [{ file: path, line: 1, column: 1, message: key }]);
  const publicPem = publicKeyPem(key);
  return { key, publicKeyPem: publicPem, fingerprint: fingerprintOf(publicPem) };
}

/** Reads a private key through one descriptor, after checking that descriptor's mode. Undefined when absent. */
function readPrivateKeyFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LoadError(
      'FILE_UNREADABLE',
      [{ file: path, line: 1, column: 1, message: `cannot read the gateway signing key: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  try {
    const st = fstatSync(fd);
    // PostgreSQL's rule for its key file: the owner's alone (0600), or root's and readable
    // by its group only (0640, 0440) — as Kubernetes mounts a Secret for a pod's fsGroup —
    // where that group is this process's own and not root's.
    const gid = process.getgid?.();
    const privateEnough =
      (st.mode & 0o077) === 0 || (st.uid === 0 && (st.mode & 0o037) === 0 && st.gid !== 0 && st.gid === gid);
    if (!st.isFile() || !privateEnough) {
      throw new LoadError('CONFIG_INVALID', [
        {
          file: path,
          line: 1,
          column: 1,
          message: `the gateway signing key is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
          hint: `chmod 600 ${path} (or, owned by root, 640 for this process's own group, not root's)`,
        },
      ]);
    }
    if (st.size > 64 * 1024)
      throw new LoadError('CONFIG_INVALID', [
        { file: path, line: 1, column: 1, message: 'the gateway signing key file is too large' },
      ]);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
