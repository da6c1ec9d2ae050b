import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OciError } from '../../../oci/errors.js';
import { assertRepositoryName, parseImageReference, parseManifestRef } from '../../../oci/reference.js';

const normalised: [string, string, string, string | undefined][] = [
  ['alpine', 'docker.io', 'library/alpine', 'latest'],
  ['docker.io/alpine', 'docker.io', 'library/alpine', 'latest'],
  ['index.docker.io/library/alpine:3', 'docker.io', 'library/alpine', '3'],
  ['user/repo:1', 'docker.io', 'user/repo', '1'],
  ['ghcr.io/a/b:1', 'ghcr.io', 'a/b', '1'],
  ['127.0.0.1:5000/test/app', '127.0.0.1:5000', 'test/app', 'latest'],
  ['localhost/app', 'localhost', 'app', 'latest'],
];
for (const [text, host, repo, tag] of normalised) {
  test(`${text} → ${host}/${repo}:${tag}`, () => {
    const r = parseImageReference(text);
    assert.deepEqual([r.host, r.repository, r.tag], [host, repo, tag]);
  });
}

test('a digest reference keeps no default tag', () => {
  const r = parseImageReference(`ghcr.io/a/b@sha256:${'c'.repeat(64)}`);
  assert.equal(r.tag, undefined);
  assert.equal(r.digest?.hex, 'c'.repeat(64));
});

const badNames = [
  'a/../../b',
  'A/B',
  'a//b',
  'a/b/',
  '',
  'x'.repeat(256),
  'ｌｉｂｒａｒｙ/x',
  'a/%2e%2e/b',
  Array.from({ length: 40 }, () => 'a').join('/'),
];
for (const name of badNames) {
  test(`repository name ${JSON.stringify(name.slice(0, 24))} is NAME_INVALID`, () => {
    assert.throws(
      () => assertRepositoryName(name),
      (e: unknown) => e instanceof OciError && e.code === 'NAME_INVALID',
    );
  });
}

test('tags follow the grammar; a 129-character tag is TAG_INVALID', () => {
  assert.deepEqual(parseManifestRef('v1.2_3-x'), { kind: 'tag', tag: 'v1.2_3-x' });
  assert.throws(
    () => parseManifestRef('t'.repeat(129)),
    (e: unknown) => e instanceof OciError && e.code === 'TAG_INVALID',
  );
  assert.throws(
    () => parseManifestRef('.hidden'),
    (e: unknown) => e instanceof OciError && e.code === 'TAG_INVALID',
  );
});
