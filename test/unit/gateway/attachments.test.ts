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

test('attachment content: archives and compressed streams are refused whatever the media type says', async () => {
  const { archiveKind, contentProblem, runnableConfig } =
    await import('../../../gateway/pipeline/attachment-content.js');
  const { gzipSync } = await import('node:zlib');
  const tar = Buffer.alloc(1024);
  tar.write('file.txt', 0, 'latin1');
  tar.write('ustar\u000000', 257, 'latin1');
  const v7 = Buffer.alloc(1024);
  v7.write('file.txt', 0, 'latin1');
  v7.write('0000644\0', 100, 'latin1');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (v7[i] as number);
  v7.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const cases: [string, Buffer, string | undefined][] = [
    ['gzip', gzipSync(Buffer.from('{}')), 'gzip data'],
    ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]), 'zstd data'],
    ['bzip2', Buffer.from('BZh91AY&SY'), 'bzip2 data'],
    ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]), 'xz data'],
    ['zip', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]), 'a zip archive'],
    ['ustar', tar, 'a tar archive'],
    ['v7 tar', v7, 'a tar archive'],
    ['JSON', Buffer.from('{"payloadType":"x"}'), undefined],
  ];
  for (const [what, bytes, kind] of cases) assert.equal(archiveKind(bytes), kind, what);
  assert.match(contentProblem('application/vnd.in-toto+json', gzipSync(Buffer.from('{}'))) ?? '', /gzip/);
  assert.match(contentProblem('application/vnd.dsse.envelope.v1+json', Buffer.from('not json')) ?? '', /not JSON/);
  assert.match(contentProblem('text/spdx', Buffer.from([0xff, 0xfe])) ?? '', /UTF-8/);
  assert.equal(contentProblem('application/vnd.dsse.envelope.v1+json', Buffer.from('{"a":1}')), undefined);
  const cosignConfig = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      os: '',
      rootfs: { type: 'layers', diff_ids: [] },
      config: {},
    }),
  );
  assert.equal(runnableConfig('application/vnd.oci.image.config.v1+json', cosignConfig), undefined);
  const image = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  assert.match(runnableConfig('application/vnd.oci.image.config.v1+json', image) ?? '', /image config/);
  const withCmd = Buffer.from(JSON.stringify({ os: '', config: { Cmd: ['/bin/sh'] } }));
  assert.match(runnableConfig('application/vnd.oci.image.config.v1+json', withCmd) ?? '', /command/);
  assert.match(runnableConfig('application/vnd.oci.empty.v1+json', Buffer.from('{"os":""}')) ?? '', /must be \{\}/);
});
