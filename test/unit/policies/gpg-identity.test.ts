import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gpgIdentityProblem, intendedRef } from '../../../policies/gpg-identity.js';
import type { GpgIdentityRule } from '../../../policies/model.js';

const D = `sha256:${'a'.repeat(64)}`;
const byTag = intendedRef('reg.example/team/app', 'v1', D);
const byDigest = intendedRef('reg.example/team/app', undefined, D);
const ok = (rule: GpgIdentityRule, signed: string, intended = byTag) =>
  gpgIdentityProblem(rule, signed, intended) === undefined;

test('matchRepoDigestOrExact: exact reference for a tag pull, same repository for a digest pull, never name-only', () => {
  const r: GpgIdentityRule = { kind: 'matchRepoDigestOrExact' };
  assert.ok(ok(r, 'reg.example/team/app:v1'));
  assert.ok(!ok(r, 'reg.example/team/app:v2'));
  assert.ok(!ok(r, 'reg.example/team/app'));
  assert.ok(ok(r, 'reg.example/team/app:anything', byDigest));
  assert.ok(!ok(r, 'reg.example/team/other:v1', byDigest));
  assert.ok(!ok(r, 'reg.example/team/app', byDigest), 'name-only is refused even for digest pulls');
});

test('matchExact, matchRepository, exactReference, exactRepository', () => {
  assert.ok(ok({ kind: 'matchExact' }, 'reg.example/team/app:v1'));
  assert.ok(!ok({ kind: 'matchExact' }, 'reg.example/team/app:v1', byDigest));
  assert.ok(ok({ kind: 'matchExact' }, `reg.example/team/app@${D}`, byDigest));
  assert.ok(ok({ kind: 'matchRepository' }, 'reg.example/team/app'));
  assert.ok(ok({ kind: 'matchRepository' }, 'reg.example/team/app:zzz'));
  assert.ok(!ok({ kind: 'matchRepository' }, 'reg.example/team/app2'));
  assert.ok(ok({ kind: 'exactReference', reference: 'other.example/x:1' }, 'other.example/x:1'));
  assert.ok(!ok({ kind: 'exactReference', reference: 'other.example/x:1' }, 'other.example/x'));
  assert.ok(ok({ kind: 'exactRepository', repository: 'other.example/x' }, 'other.example/x:9'));
});

test('docker.io names are normalized on both sides', () => {
  const hub = intendedRef('docker.io/library/busybox', 'latest', D);
  assert.ok(ok({ kind: 'matchRepoDigestOrExact' }, 'busybox:latest', hub));
  assert.ok(ok({ kind: 'matchRepoDigestOrExact' }, 'docker.io/library/busybox:latest', hub));
  assert.ok(!ok({ kind: 'matchRepoDigestOrExact' }, 'busybox', hub));
});

test('remapIdentity replaces the prefix, then matches as matchRepoDigestOrExact', () => {
  const rule: GpgIdentityRule = {
    kind: 'remapIdentity',
    prefix: 'mirror.example:5000/team',
    signedPrefix: 'reg.example/team',
  };
  const mirrored = intendedRef('mirror.example:5000/team/app', 'v1', D);
  assert.ok(ok(rule, 'reg.example/team/app:v1', mirrored));
  assert.ok(!ok(rule, 'mirror.example:5000/team/app:v1', mirrored));
  assert.ok(!ok(rule, 'reg.example/team/app:v2', mirrored));
  // Outside the prefix (at a / boundary) nothing is remapped.
  const outside = intendedRef('mirror.example:5000/teamster/app', 'v1', D);
  assert.ok(ok(rule, 'mirror.example:5000/teamster/app:v1', outside));
});

test('an invalid signed reference is a problem, not a crash', () => {
  assert.match(
    gpgIdentityProblem({ kind: 'matchRepository' }, 'UPPER/Case::', byTag) ?? '',
    /not a valid image reference/,
  );
});

test('a registry written another way in the signature is another registry, as in containers/image', () => {
  const hub = intendedRef('docker.io/library/busybox', 'latest', D);
  assert.ok(
    ok({ kind: 'matchRepoDigestOrExact' }, 'index.docker.io/library/busybox:latest', hub),
    'docker/reference reads index.docker.io as docker.io',
  );
  for (const signed of ['DOCKER.IO/library/busybox:latest', 'registry-1.docker.io/library/busybox:latest'])
    assert.ok(!ok({ kind: 'matchRepository' }, signed, hub), signed);
  assert.ok(!ok({ kind: 'matchRepository' }, 'reg.example:443/team/app:v1'));
});
