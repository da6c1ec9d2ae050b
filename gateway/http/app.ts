import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { digestOf } from '../../oci/digest.js';
import { UpstreamError } from '../../oci/errors.js';
import { MediaType } from '../../oci/media-types.js';
import { impersonatesGateway, type GatewaySigner } from '../attestations.js';
import { GatewayError } from '../errors.js';
import { BlobService, type FleetFills } from '../pipeline/blobs.js';
import { readinessCheck } from './readiness.js';
import type { ClientAuth } from '../auth/client-auth.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import type { TokenIssuer } from '../auth/tokens.js';
import { installClientAccess } from './client-access.js';
import { descriptorJson, listReferrers, listTags, parsePageSize } from '../pipeline/listings.js';
import { ManifestService, type ManifestServiceDeps } from '../pipeline/manifests.js';
import { withDeadline, type Upstreams } from '../upstreams.js';
import { errorBody, mapError } from './error-mapper.js';
import { parseRegistryPath, type RegistryPath } from './registry-path.js';

/**
 * The gateway's HTTP surface: the pull side of the OCI Distribution API, /healthz,
 * /readyz and /metrics. `buildApp` returns an un-listened instance; tests drive it with inject()
 * or a real port. Push and delete answer 405 UNSUPPORTED.
 */
export interface AppDeps extends Omit<ManifestServiceDeps, 'now'> {
  readonly upstreams: Upstreams;
  readonly signer: GatewaySigner;
  /** HTTPS; `clientCa`: client certificates it issued sign users in (`requireClientCert`: no connection without one). */
  readonly https?: {
    readonly cert: Buffer;
    readonly key: Buffer;
    readonly clientCa?: Buffer | undefined;
    readonly requireClientCert?: boolean;
  };
  readonly now?: () => number;
  /** Replicas sharing a blob store: one upstream fetch per cold blob for all of them. */
  readonly fleet?: FleetFills;
  /** Stored blobs are answered with a redirect to a pre-signed URL valid this long (store.redirect). */
  readonly blobRedirectSeconds?: number | undefined;
  /** Who may pull; undefined: anyone. */
  readonly clientAuth?: ClientAuth | undefined;
  /** Bearer tokens for clientAuth's users (the Docker token flow); undefined: basic authentication. */
  readonly tokens?: TokenIssuer | undefined;
  readonly tokenRealm?: string | undefined;
  readonly rateLimiter?: RateLimiter | undefined;
}

export interface GatewayApp {
  readonly app: FastifyInstance;
  readonly blobs: BlobService;
}

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };
/** One answer for every repository a user may not pull, whether it exists or not. */
const accessDenied = () => new GatewayError('ACCESS_DENIED', 'requested access to the resource is denied');
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function buildApp(deps: AppDeps): GatewayApp {
  const now = deps.now ?? Date.now;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    exposeHeadRoutes: false,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    ...(deps.https
      ? {
          https: {
            cert: deps.https.cert,
            key: deps.https.key,
            ...(deps.https.clientCa
              ? {
                  ca: deps.https.clientCa,
                  requestCert: true,
                  rejectUnauthorized: deps.https.requireClientCert === true,
                }
              : {}),
          },
        }
      : {}),
  }) as unknown as FastifyInstance;
  const manifests = new ManifestService({ ...deps, now });
  const blobs = new BlobService(deps.store, deps.metadata, deps.metrics, deps.policy, deps.fleet);

  app.decorateRequest('routeKind', 'other');
  app.decorateRequest('clientUser', '');
  app.decorateRequest('clientToken', undefined);
  // Only origin-form targets (`/v2/…`): an absolute URL in the request line is refused, not routed.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('/')) return;
    return reply
      .code(400)
      .header('content-type', 'application/json')
      .send(JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: 'the request target must be a path' }] }));
  });
  const clientAuth = deps.clientAuth;
  const access = installClientAccess(app, {
    auth: clientAuth,
    tokens: deps.tokens,
    realm: deps.tokenRealm,
    limiter: deps.rateLimiter,
    certificates: deps.https?.clientCa !== undefined,
    https: deps.https !== undefined,
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.header('docker-distribution-api-version', API_VERSION['docker-distribution-api-version']);
    reply.header('x-request-id', _req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.requests.inc({ route: req.routeKind, method: req.method, status: String(reply.statusCode) });
  });

  app.setErrorHandler((err, req, reply) => {
    const e = mapError(err);
    const code = (err as { code?: string }).code;
    if (err instanceof UpstreamError) {
      // An upstream that is slow, down or refusing is expected: one line, no stack.
      const line = { code, upstream: err.upstream, reason: e.detail?.reason, detail: err.message };
      if (e.status >= 500) req.log.warn(line, 'upstream failed');
      else req.log.info(line, 'request refused');
    } else if (e.status >= 500) req.log.error({ err, code }, 'request failed');
    else req.log.info({ code, reason: e.detail?.reason, detail: e.message }, 'request refused');
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
    for (const [name, value] of Object.entries(e.headers ?? {})) reply.header(name, value);
    void reply.status(e.status).header('content-type', 'application/json').send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .header('content-type', 'application/json')
      .send(
        JSON.stringify({
          errors: [
            { code: 'NAME_UNKNOWN', message: `no route for ${req.method} ${req.url.split('?')[0]?.slice(0, 200)}` },
          ],
        }),
      );
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  const ready = readinessCheck({ metadata: deps.metadata, store: deps.store, upstreams: deps.upstreams.all });
  app.get('/readyz', async (_req, reply) => {
    const r = await ready();
    void reply.code(r.ready ? 200 : 503);
    return { status: r.ready ? 'ready' : 'unready', checks: r.checks };
  });
  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  // The gateway's public key, for pinning (`_` cannot start a repository name: no collision).
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2/_portcullis/gateway.pub',
    handler: async (_req, reply) =>
      reply.header('content-type', 'application/x-pem-file').send(deps.signer.publicKeyPem),
  });
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2/_portcullis/gateway.json',
    handler: async () => ({
      fingerprint: `sha256:${deps.signer.fingerprint}`,
      verifierId: deps.signer.verifierId,
      publicKey: deps.signer.publicKeyPem,
      // A rotation under way: attestations are signed with these keys as well.
      previousKeys: deps.signer.previous.map((k) => ({
        fingerprint: `sha256:${k.fingerprint}`,
        publicKey: k.publicKeyPem,
      })),
      policyDigest: deps.policy().digest.text,
    }),
  });
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2/',
    handler: async (_req, reply) => reply.header('content-type', 'application/json').send('{}'),
  });

  const unsupported = async (): Promise<never> => {
    throw new GatewayError('OPERATION_UNSUPPORTED', 'this gateway is pull-only: push and delete are not supported');
  };
  app.route({ method: ['PUT', 'POST', 'PATCH', 'DELETE'], url: '/v2/*', handler: unsupported });
  app.route({ method: ['PUT', 'POST', 'PATCH', 'DELETE'], url: '/v2/', handler: unsupported });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2/*',
    handler: async (req, reply) => {
      const [path = '', query = ''] = req.url.split('?', 2) as [string, string?];
      if (path === '/v2/_catalog') throw new GatewayError('OPERATION_UNSUPPORTED', 'the catalog is not offered');
      const parsed = parseRegistryPath(path);
      if (!parsed) throw new GatewayError('NAME_UNKNOWN', 'unknown registry endpoint');
      req.routeKind = parsed.kind;
      const params = new URLSearchParams(query);
      const ns = params.getAll('ns');
      const resolve = () =>
        deps.upstreams.resolve(parsed.name, ns.length === 0 ? undefined : ns.length === 1 ? ns[0] : ns);
      let resolved: ReturnType<typeof resolve>;
      try {
        resolved = resolve();
      } catch (err) {
        // With client auth, a name that is not configured reads as one this user may not pull.
        if (clientAuth) throw accessDenied();
        throw err;
      }
      if (clientAuth && !clientAuth.mayPull(req.clientUser, resolved.name)) throw accessDenied();
      // A token is good for the repositories it names (and the rights the config still gives).
      if (req.clientToken && !req.clientToken.pull.has(parsed.name))
        return access.insufficientScope(req, reply, parsed.name);
      // One deadline for the whole request, every upstream call and retry included.
      const addr = withDeadline(resolved);
      if (addr.namespace !== undefined) reply.header('oci-namespace', addr.namespace);
      return handle(parsed, addr, params, req, reply);
    },
  });

  async function handle(
    p: RegistryPath,
    addr: ReturnType<Upstreams['resolve']>,
    params: URLSearchParams,
    req: FastifyRequest,
    reply: FastifyReply,
  ): Promise<unknown> {
    // What the policy rejects by name is refused before anything goes upstream.
    if (p.kind !== 'manifest') manifests.refuseByName(addr);
    switch (p.kind) {
      case 'attestation': {
        const envelope = await manifests.gatewayAttestation(addr, p.digest);
        reply
          .header('content-type', MediaType.dsseEnvelope)
          .header('docker-content-digest', digestOf(envelope).text)
          .header('cache-control', 'no-store')
          .header('content-length', String(envelope.length));
        return req.method === 'HEAD' ? reply.send() : reply.send(envelope);
      }
      case 'manifest': {
        const accept = req.headers.accept;
        const m = await manifests.get(addr, p.ref, accept);
        const etag = `"${m.digest.text}"`;
        reply.header('content-type', m.mediaType).header('docker-content-digest', m.digest.text).header('etag', etag);
        // Warning 110 "Response is Stale" (RFC 7234 §5.5.1); the text is ASCII without quotes.
        if (m.stale !== undefined)
          reply.header('warning', `110 portcullis "${m.stale.replace(/[^\x20-\x7e]|"/g, '')}"`);
        if (req.headers['if-none-match'] === etag) return reply.status(304).send();
        reply.header('content-length', String(m.bytes.length));
        return req.method === 'HEAD' ? reply.send() : reply.send(m.bytes);
      }
      case 'blob': {
        reply
          .header('docker-content-digest', p.digest.text)
          .header('accept-ranges', 'bytes')
          .header('content-type', 'application/octet-stream');
        if (req.method === 'HEAD') {
          const size = await blobs.size(addr, p.digest);
          return reply.header('content-length', String(size)).send();
        }
        if (deps.blobRedirectSeconds !== undefined) {
          const location = await blobs.redirect(addr, p.digest, deps.blobRedirectSeconds);
          if (location !== undefined) return reply.status(307).header('location', location).send();
        }
        const body = await blobs.open(addr, p.digest, req.headers.range);
        const length = body.range ? body.range.end - body.range.start + 1 : body.size;
        reply.raw.once('finish', () => deps.metrics.bytesServed.inc(length));
        reply.header('content-length', String(length));
        if (body.range)
          reply.status(206).header('content-range', `bytes ${body.range.start}-${body.range.end}/${body.size}`);
        return reply.send(body.stream);
      }
      case 'tags': {
        const n = parsePageSize(params.get('n') ?? undefined);
        const last = params.get('last') ?? undefined;
        const { tags, next } = await listTags(addr, n, last);
        if (next !== undefined) {
          const q = new URLSearchParams({ n: String(n), last: next });
          if (addr.namespace !== undefined) q.set('ns', addr.namespace);
          reply.header('link', `</v2/${p.name}/tags/list?${q.toString()}>; rel="next"`);
        }
        return reply.header('content-type', 'application/json').send(JSON.stringify({ name: p.name, tags }));
      }
      case 'referrers': {
        const artifactType = params.get('artifactType') ?? undefined;
        if (artifactType !== undefined) reply.header('oci-filters-applied', 'artifactType');
        // A digest that is not admitted here has no referrers to show: an empty index,
        // never a 404 (clients take that for "no referrers API"), and nothing asked upstream.
        let entries: Record<string, unknown>[] = [];
        if (await manifests.admittedNow(addr, p.digest)) {
          const { manifests: list } = await listReferrers(addr, p.digest, artifactType);
          const ours = await manifests.attestationReferrer(addr, p.digest);
          const theirs = list.filter((d) => !impersonatesGateway(d.annotations)).map(descriptorJson);
          entries = [
            ...theirs,
            ...(ours && (artifactType === undefined || artifactType === ours.artifactType) ? [ours] : []),
          ];
        }
        return reply
          .header('content-type', MediaType.ociIndex)
          .send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries })));
      }
    }
  }

  return { app, blobs };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Which endpoint family served the request, for metrics. */
    routeKind: string;
    /** The user who signed in (clientAuth), or ''. */
    clientUser: string;
  }
}
