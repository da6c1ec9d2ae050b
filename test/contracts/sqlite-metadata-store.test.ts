import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqliteMetadataStore } from '../../gateway/metadata/sqlite-metadata-store.js';
import { tempDir } from '../helpers/tmp.js';
import { metadataStoreContract } from './metadata-store.contract.js';

metadataStoreContract('SqliteMetadataStore', async () => {
  const dir = tempDir();
  const store = new SqliteMetadataStore(join(dir.path, 'm.db'));
  return {
    store,
    cleanup: async () => {
      await store.close();
      dir.cleanup();
    },
  };
});

test('SqliteMetadataStore: data survives reopening (migrations are idempotent)', async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'm.db');
    const a = new SqliteMetadataStore(path);
    await a.setTag('reg/a', 'v1', `sha256:${'1'.repeat(64)}`, 5);
    await a.close();
    const b = new SqliteMetadataStore(path);
    assert.equal((await b.tag('reg/a', 'v1'))?.resolvedAt, 5);
    await b.close();
  } finally {
    dir.cleanup();
  }
});
