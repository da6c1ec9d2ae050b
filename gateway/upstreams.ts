import { CircuitBreaker, guardedClient } from './upstream-breaker.js';
import { assertRepositoryName, normalizeHost } from '../oci/reference.js';
import {
  RegistryClient,
  scopedClient,
  type UpstreamClient,
  type UpstreamObservation,
} from '../oci/registry-client/client.js';
import { readSecret, type UpstreamConfig } from './config.js';
import type { RegistriesD } from './registries-d.js';
import { GatewayError } from './errors.js';

/**
 * Maps what a client asked for onto a configured upstream. Three addressing forms:
 *   /v2/<prefix>/<repo>/…      path prefix per upstream (podman/skopeo mirrors, URLs)
 *   /v2/<repo>/…?ns=<host>     containerd's mirror parameter
 *   /v2/<repo>/…               Docker Hub mirror (Docker Engine's registry-mirrors)
 * Only configured upstreams are ever chosen: `ns` is a lookup key, never a dial
 * target (THREATS REG-14), so the gateway is not an open proxy.
 */
export interface Upstream {
  readonly config: UpstreamConfig;
  readonly client: UpstreamClient;
  /** Set on the view one client request has: its deadline (see `withDeadline`). */
  readonly signal?: AbortSignal | undefined;
  /** The GPG lookaside for one of its repositories (`name/path`), when a registries.d names one. */
  readonly lookasideFor?: ((name: string) => string | undefined) | undefined;
}

/** A configured upstream with its client: credentials resolved now, GPG lookasides from its config or a registries.d. */
export function openUpstream(
  u: UpstreamConfig,
  env: NodeJS.ProcessEnv,
  registriesD?: RegistriesD,
  observe?: (o: UpstreamObservation) => void,
  onBreaker?: (state: 'open' | 'closed', failures: number) => void,
): Upstream {
  const breaker = new CircuitBreaker(
    u.name,
    u.breaker?.failures ?? 5,
    (u.breaker?.openSeconds ?? 30) * 1000,
    Date.now,
    onBreaker,
    u.timeouts.headersMs,
  );
  return {
    config: u,
    lookasideFor: registriesD ? (name: string) => registriesD.lookasideFor(name) : undefined,
    client: guardedClient(
      new RegistryClient({
        baseUrl: u.url,
        credentials:
          u.username !== undefined && u.password !== undefined
            ? { username: u.username, password: readSecret(u.password, env) }
            : undefined,
        allowedRealmOrigins: u.authRealms,
        allowedRedirectOrigins: u.redirectOrigins,
        timeouts: u.timeouts,
        observe,
      }),
      breaker,
    ),
  };
}

export interface Address {
  readonly upstream: Upstream;
  /** The repository on the upstream. */
  readonly repository: string;
  /** `<upstream name>/<repository>`: the canonical name used for policy, cache and logs. */
  readonly name: string;
  /** Set when `ns` chose the upstream; echoed as OCI-Namespace. */
  readonly namespace: string | undefined;
}

export class Upstreams {
  readonly #byPrefix = new Map<string, Upstream>();
  readonly #byName = new Map<string, Upstream>();
  readonly #hub: Upstream | undefined;

  constructor(readonly all: readonly Upstream[]) {
    for (const u of all) {
      this.#byPrefix.set(u.config.prefix, u);
      this.#byName.set(u.config.name, u);
    }
    this.#hub = all.find((u) => u.config.dockerHubMirror);
  }

  resolve(pathName: string, ns: string | string[] | undefined): Address {
    assertRepositoryName(pathName);
    if (ns !== undefined) {
      if (Array.isArray(ns)) throw new GatewayError('NAMESPACE_INVALID', 'the ns parameter may appear only once');
      const host = normalizeHost(ns);
      const upstream = this.#byName.get(host);
      if (!upstream)
        throw new GatewayError('NAME_UNKNOWN', `no upstream is configured for ${JSON.stringify(ns.slice(0, 100))}`);
      return this.#address(upstream, pathName, ns);
    }
    const slash = pathName.indexOf('/');
    if (slash > 0) {
      const upstream = this.#byPrefix.get(pathName.slice(0, slash));
      if (upstream) return this.#address(upstream, pathName.slice(slash + 1), undefined);
    }
    if (this.#hub) return this.#address(this.#hub, pathName, undefined);
    throw new GatewayError('NAME_UNKNOWN', `no upstream serves ${pathName}`, {
      detail: { reason: 'name.unknown', name: pathName },
    });
  }

  #address(upstream: Upstream, repo: string, namespace: string | undefined): Address {
    const repository = upstream.config.name === 'docker.io' && !repo.includes('/') ? `library/${repo}` : repo;
    assertRepositoryName(repository);
    return { upstream, repository, name: `${upstream.config.name}/${repository}`, namespace };
  }
}

/**
 * The address as one client request uses it: every buffered upstream call it makes
 * (manifests, signatures, lookasides, tag lists) ends when the request's deadline,
 * `timeouts.totalMs` of its upstream, does. Blob fills are not bound by it.
 */
export function withDeadline(addr: Address): Address {
  const signal = AbortSignal.timeout(addr.upstream.config.timeouts.totalMs);
  return { ...addr, upstream: { ...addr.upstream, client: scopedClient(addr.upstream.client, signal), signal } };
}
