import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attachmentProblem, attachmentSubject } from '../../../gateway/pipeline/attachments.js';
import { parseManifest } from '../../../oci/manifest.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const manifest = (config: string, layers: [string, number][]) =>
  parseManifest(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: config, digest: D('a'), size: 233 },
        layers: layers.map(([mediaType, size]) => ({ mediaType, digest: D('b'), size })),
      }),
    ),
  );

test('attachment tags name their subject', () => {
  assert.deepEqual(attachmentSubject(`sha256-${'c'.repeat(64)}.sig`), { digest: D('c'), suffix: '.sig' });
  assert.deepEqual(attachmentSubject(`sha256-${'c'.repeat(64)}`), { digest: D('c'), suffix: '' });
  assert.equal(attachmentSubject('latest'), undefined);
  assert.equal(attachmentSubject(`sha256-${'c'.repeat(63)}.sig`), undefined);
});

const cases: [string, ReturnType<typeof manifest>, boolean][] = [
  [
    'a cosign signature',
    manifest('application/vnd.oci.image.config.v1+json', [['application/vnd.dev.cosign.simplesigning.v1+json', 244]]),
    true,
  ],
  [
    'a cosign attestation',
    manifest('application/vnd.oci.image.config.v1+json', [['application/vnd.dsse.envelope.v1+json', 5000]]),
    true,
  ],
  [
    'an image layer dressed as a signature tag',
    manifest('application/vnd.oci.image.config.v1+json', [['application/vnd.oci.image.layer.v1.tar+gzip', 5000]]),
    false,
  ],
  ['an unknown config type', manifest('application/vnd.example.runtime+json', [['application/spdx+json', 10]]), false],
  [
    'an oversized "SBOM" layer',
    manifest('application/vnd.oci.empty.v1+json', [['application/spdx+json', 64 * 1024 * 1024]]),
    false,
  ],
];
for (const [what, m, ok] of cases) {
  test(`${what} ${ok ? 'is' : 'is not'} an attachment`, () => {
    assert.equal(attachmentProblem(m, '.sig') === undefined, ok);
  });
}
