import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FsBlobStore } from '../../gateway/store/fs-blob-store.js';
import { tempDir } from '../helpers/tmp.js';
import { blobStoreContract } from './blob-store.contract.js';

blobStoreContract('FsBlobStore', async () => {
  const dir = tempDir();
  return { store: await FsBlobStore.open(dir.path), cleanup: async () => dir.cleanup() };
});

test('FsBlobStore: opening removes what a crash left in tmp/', async () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, 'tmp'), { recursive: true });
    writeFileSync(join(dir.path, 'tmp', 'half-written'), 'xx');
    await FsBlobStore.open(dir.path);
    assert.deepEqual(readdirSync(join(dir.path, 'tmp')), []);
  } finally {
    dir.cleanup();
  }
});
