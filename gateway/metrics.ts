import { Counter, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one gateway instance (its own registry: no global state). */
export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly cache: Counter<'kind' | 'result'>;
  readonly bytesServed: Counter;
  readonly bytesFetched: Counter;
  readonly decisions: Counter<'result'>;
  readonly upstreamLatency: Histogram<'upstream' | 'method' | 'status'>;
  readonly policyReloads: Counter<'result'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'portcullis_http_requests_total',
      help: 'Requests served, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    cache: new Counter({
      name: 'portcullis_cache_requests_total',
      help: 'Cache lookups, by kind (blob, manifest) and result (hit, miss)',
      labelNames: ['kind', 'result'],
      registers,
    }),
    bytesServed: new Counter({ name: 'portcullis_bytes_served_total', help: 'Blob bytes sent to clients', registers }),
    bytesFetched: new Counter({
      name: 'portcullis_bytes_fetched_total',
      help: 'Blob bytes fetched from upstreams',
      registers,
    }),
    decisions: new Counter({
      name: 'portcullis_decisions_total',
      help: 'Policy decisions, by result',
      labelNames: ['result'],
      registers,
    }),
    upstreamLatency: new Histogram({
      name: 'portcullis_upstream_request_seconds',
      help: 'Time to upstream response headers',
      labelNames: ['upstream', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    policyReloads: new Counter({
      name: 'portcullis_policy_reloads_total',
      help: 'Policy reloads (file change or SIGHUP), by result: reloaded, unchanged, failed',
      labelNames: ['result'],
      registers,
    }),
  };
}
