import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { UpstreamConfig } from '../../../gateway/config.js';
import { GatewayError } from '../../../gateway/errors.js';
import { parseRange } from '../../../gateway/pipeline/blobs.js';
import { Upstreams, type Upstream } from '../../../gateway/upstreams.js';
import type { RegistryClient } from '../../../oci/registry-client/client.js';

const up = (name: string, prefix: string, dockerHubMirror = false): Upstream => ({
  config: {
    name,
    url: `https://${name}`,
    prefix,
    dockerHubMirror,
    username: undefined,
    password: undefined,
    authRealms: undefined,
    redirectOrigins: undefined,
    timeouts: { headersMs: 1, idleMs: 1, totalMs: 1, minBytesPerSecond: 0 },
  } satisfies UpstreamConfig,
  client: {} as RegistryClient,
});
const table = new Upstreams([
  up('ghcr.io', 'ghcr.io'),
  up('registry.local:5000', 'local'),
  up('docker.io', 'docker.io', true),
]);

const resolved: [string, string | undefined, string][] = [
  ['ghcr.io/team/app', undefined, 'ghcr.io/team/app'],
  ['local/team/app', undefined, 'registry.local:5000/team/app'],
  ['library/alpine', undefined, 'docker.io/library/alpine'],
  ['alpine', undefined, 'docker.io/library/alpine'],
  ['user/repo', undefined, 'docker.io/user/repo'],
  ['docker.io/alpine', undefined, 'docker.io/library/alpine'],
  ['team/app', 'REGISTRY.LOCAL:5000', 'registry.local:5000/team/app'],
  ['pause', 'index.docker.io', 'docker.io/library/pause'],
];
for (const [path, ns, name] of resolved) {
  test(`${path}${ns ? `?ns=${ns}` : ''} → ${name}`, () => {
    assert.equal(table.resolve(path, ns).name, name);
  });
}

test('an ns that names no configured upstream is NAME_UNKNOWN; a repeated ns is NAMESPACE_INVALID', () => {
  assert.throws(
    () => table.resolve('x/y', '169.254.169.254'),
    (e: unknown) => e instanceof GatewayError && e.code === 'NAME_UNKNOWN',
  );
  assert.throws(
    () => table.resolve('x/y', ['docker.io', 'evil.io']),
    (e: unknown) => e instanceof GatewayError && e.code === 'NAMESPACE_INVALID',
  );
  assert.throws(
    () => new Upstreams([up('ghcr.io', 'ghcr.io')]).resolve('x/y', undefined),
    (e: unknown) => e instanceof GatewayError && e.code === 'NAME_UNKNOWN',
  );
});

const ranges: [string, number, { start: number; end: number } | undefined][] = [
  ['bytes=0-9', 100, { start: 0, end: 9 }],
  ['bytes=90-', 100, { start: 90, end: 99 }],
  ['bytes=-10', 100, { start: 90, end: 99 }],
  ['bytes=50-1000', 100, { start: 50, end: 99 }],
  ['bytes=0-0,1-1,2-2', 100, undefined],
  ['items=0-1', 100, undefined],
];
for (const [header, size, want] of ranges) {
  test(`Range ${header} of ${size} bytes`, () => assert.deepEqual(parseRange(header, size), want));
}
for (const header of ['bytes=100-', 'bytes=-0', 'bytes=9-3', 'bytes=']) {
  test(`Range ${header} is RANGE_INVALID`, () => {
    assert.throws(
      () => parseRange(header, 100),
      (e: unknown) => e instanceof GatewayError && e.code === 'RANGE_INVALID',
    );
  });
}
