import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractConfined } from '../../runner/unpack/confined.js';
import { UnpackError } from '../../runner/unpack/errors.js';
import { gzip, sha256, tarLayer, type EntrySpec } from '../helpers/layers.js';
import { peer, run } from '../helpers/peers.js';
import { tempDir } from '../helpers/tmp.js';

describe('layers are unpacked in a confined child, and hostile entries are refused by name', () => {
  const sandbox = tempDir('portcullis-unpack-');
  const outside = join(sandbox.path, 'outside');
  const canary = join(outside, 'canary');
  let n = 0;
  let canaryBefore: string;

  before(() => {
    peer('bwrap');
    mkdirSync(outside);
    writeFileSync(canary, 'do not touch\n', { mode: 0o644 });
    canaryBefore = fingerprint();
  });
  after(() => sandbox.cleanup());

  function fingerprint(): string {
    const st = lstatSync(canary);
    return `${st.ino}:${st.mode}:${st.mtimeMs}:${readFileSync(canary, 'utf8')}:${readdirSync(outside).join(',')}`;
  }

  async function unpack(layers: Buffer[], diffIds?: string[], extra: { maxLayerBytes?: number } = {}): Promise<string> {
    const root = join(sandbox.path, `root-${++n}`);
    mkdirSync(root);
    const plan = layers.map((bytes, i) => {
      const path = join(sandbox.path, `layer-${n}-${i}`);
      writeFileSync(path, bytes);
      return { path, diffId: diffIds?.[i] ?? sha256(bytes) };
    });
    await extractConfined({
      root,
      layers: plan,
      keepSetuid: false,
      maxEntries: 100_000,
      maxLayerBytes: extra.maxLayerBytes ?? 1 << 30,
    });
    return root;
  }
  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => 'accepted',
      (e: unknown) => (e instanceof UnpackError ? e.code : `other: ${(e as Error).message}`),
    );

  const hostile: [string, () => EntrySpec[], string][] = [
    ['".." traversal', () => [{ name: '../outside/canary', body: 'pwned' }], 'TAR_PATH_ESCAPE'],
    ['an absolute name', () => [{ name: canary, body: 'pwned' }], 'TAR_ABSOLUTE_PATH'],
    [
      'a write through a symlink to outside',
      () => [
        { name: 'link', type: 'symlink', linkname: outside },
        { name: 'link/canary', body: 'pwned' },
      ],
      'TAR_THROUGH_SYMLINK',
    ],
    [
      'a directory replaced by a symlink, then written into',
      () => [{ name: 'd/' }, { name: 'd', type: 'symlink', linkname: '../..' }, { name: 'd/x', body: 'pwned' }],
      'TAR_THROUGH_SYMLINK',
    ],
    [
      'a hardlink out of the root',
      () => [{ name: 'hl', type: 'link', linkname: '../outside/canary' }],
      'TAR_PATH_ESCAPE',
    ],
    ['a hardlink to an absolute path', () => [{ name: 'hl', type: 'link', linkname: canary }], 'TAR_ABSOLUTE_PATH'],
    [
      'a hardlink to a symlink',
      () => [
        { name: 's', type: 'symlink', linkname: canary },
        { name: 'hl', type: 'link', linkname: 's' },
      ],
      'TAR_HARDLINK_ESCAPE',
    ],
    ['a character device', () => [{ name: 'dev/mem', type: 'character-device' }], 'TAR_DEVICE_NODE'],
    ['an invalid whiteout', () => [{ name: '.wh.', body: '' }], 'TAR_BAD_ENTRY'],
  ];
  for (const [what, entries, code] of hostile) {
    test(`${what}: ${code}, and nothing outside the root changes`, async () => {
      assert.equal(await refusal(unpack([await tarLayer(entries())])), code);
      assert.equal(fingerprint(), canaryBefore);
    });
  }

  test('whiteouts and opaque directories remove what lower layers put there', async () => {
    const lower = await tarLayer([
      { name: 'a/' },
      { name: 'a/x', body: 'x' },
      { name: 'a/y', body: 'y' },
      { name: 'b', body: 'b' },
      { name: 'd/' },
      { name: 'd/old', body: 'old' },
    ]);
    const upper = await tarLayer([
      { name: 'a/.wh.x', body: '' },
      { name: '.wh.b', body: '' },
      { name: 'd/new', body: 'new' },
      { name: 'd/.wh..wh..opq', body: '' },
    ]);
    const root = await unpack([lower, upper]);
    assert.deepEqual(readdirSync(join(root, 'a')), ['y']);
    assert.deepEqual(
      readdirSync(root).sort(),
      ['.secure-run', 'a', 'd', 'dev', 'proc', 'sys', 'tmp'],
      "the layers' entries and the runtime's mount points",
    );
    assert.deepEqual(readdirSync(join(root, 'd')), ['new'], "the opaque marker keeps this layer's own entries");
  });

  test('entries replace what lower layers left (file by directory, directory by file, symlink by file); a read-only directory is still filled', async () => {
    const lower = await tarLayer([
      { name: 'x', body: 'file' },
      { name: 'y/' },
      { name: 'y/inner', body: 'i' },
      { name: 'z', type: 'symlink', linkname: '/etc' },
    ]);
    const upper = await tarLayer([
      { name: 'x/' },
      { name: 'x/a', body: 'a' },
      { name: 'y', body: 'now a file' },
      { name: 'z', body: 'plain' },
      { name: 'ro/', mode: 0o555 },
      { name: 'ro/f', body: 'f' },
    ]);
    const root = await unpack([lower, upper]);
    assert.equal(readFileSync(join(root, 'x', 'a'), 'utf8'), 'a');
    assert.equal(readFileSync(join(root, 'y'), 'utf8'), 'now a file');
    assert.ok(lstatSync(join(root, 'z')).isFile());
    assert.equal(readFileSync(join(root, 'ro', 'f'), 'utf8'), 'f');
    assert.equal(lstatSync(join(root, 'ro')).mode & 0o777, 0o555);
  });

  test('setuid and setgid bits are stripped; symlinks are created as they are', async () => {
    const root = await unpack([
      await tarLayer([
        { name: 'bin/' },
        { name: 'bin/su', body: '#!', mode: 0o6755 },
        { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
      ]),
    ]);
    assert.equal(lstatSync(join(root, 'bin', 'su')).mode & 0o7777, 0o755);
    assert.ok(lstatSync(join(root, 'bin', 'sh')).isSymbolicLink());
  });

  test('gzip and zstd layers are read by their bytes, and the diffID is checked', async () => {
    const plain = await tarLayer([{ name: 'hello.txt', body: 'hi\n' }]);
    const zstdFile = join(sandbox.path, 'plain.tar');
    writeFileSync(zstdFile, plain);
    await run('zstd', ['-q', '-f', zstdFile, '-o', `${zstdFile}.zst`]);
    const zstd = readFileSync(`${zstdFile}.zst`);
    const root = await unpack([gzip(plain), zstd], [sha256(plain), sha256(plain)]);
    assert.equal(readFileSync(join(root, 'hello.txt'), 'utf8'), 'hi\n');
    assert.equal(
      await refusal(unpack([gzip(plain)], [sha256(Buffer.from('something else'))])),
      'LAYER_DIFFID_MISMATCH',
    );
  });

  test('a decompression bomb stops at the budget', async () => {
    const bomb = gzip(await tarLayer([{ name: 'zeros', body: '\0'.repeat(8 * 1024 * 1024) }]));
    assert.ok(bomb.length < 64 * 1024);
    assert.equal(await refusal(unpack([bomb], undefined, { maxLayerBytes: 1024 * 1024 })), 'TAR_LIMIT');
  });
});
