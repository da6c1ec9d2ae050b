import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OciError } from '../../../oci/errors.js';
import { MAX_DESCRIPTORS, parseManifest } from '../../../oci/manifest.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('a'), size: 2 };
const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('b'), size: 10 };
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const enc = (v: unknown) => Buffer.from(JSON.stringify(v));

test('an OCI manifest without mediaType takes the Content-Type (umoci writes none)', () => {
  const m = parseManifest(enc({ schemaVersion: 2, config, layers: [layer] }), OCI);
  assert.equal(m.kind, 'image');
  assert.equal(m.mediaType, OCI);
});

test('a Docker manifest list is an index', () => {
  const m = parseManifest(
    enc({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
      manifests: [
        {
          ...layer,
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    }),
  );
  assert.equal(m.kind, 'index');
});

const bad: [string, string, Buffer, string | undefined][] = [
  [
    'Content-Type disagrees with mediaType',
    'MEDIA_TYPE_MISMATCH',
    enc({ schemaVersion: 2, mediaType: OCI, config, layers: [] }),
    'application/vnd.oci.image.index.v1+json',
  ],
  ['schema 1', 'MANIFEST_UNSUPPORTED', enc({ schemaVersion: 1, name: 'x', fsLayers: [] }), undefined],
  [
    'a descriptor with a bad digest',
    'MANIFEST_INVALID',
    enc({ schemaVersion: 2, config, layers: [{ ...layer, digest: 'sha256:x' }] }),
    OCI,
  ],
  ['a negative size', 'MANIFEST_INVALID', enc({ schemaVersion: 2, config, layers: [{ ...layer, size: -1 }] }), OCI],
  [
    'too many layers',
    'MANIFEST_INVALID',
    enc({ schemaVersion: 2, config, layers: Array.from({ length: MAX_DESCRIPTORS + 1 }, () => layer) }),
    OCI,
  ],
  [
    'an image with "manifests"',
    'MANIFEST_INVALID',
    enc({ schemaVersion: 2, mediaType: OCI, config, layers: [], manifests: [] }),
    undefined,
  ],
  [
    'an unknown media type',
    'MANIFEST_UNSUPPORTED',
    enc({ schemaVersion: 2, mediaType: 'application/x-evil', config, layers: [] }),
    undefined,
  ],
  ['more than 4 MiB', 'SIZE_EXCEEDED', Buffer.alloc(4 * 1024 * 1024 + 1, 0x20), OCI],
];
for (const [what, code, bytes, ct] of bad) {
  test(`${what} is ${code}`, () => {
    assert.throws(
      () => parseManifest(bytes, ct),
      (e: unknown) => e instanceof OciError && e.code === code,
    );
  });
}
