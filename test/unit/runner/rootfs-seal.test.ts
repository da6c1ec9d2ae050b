import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sealOf } from '../../../runner/unpack/tree.js';
import { tempDir } from '../../helpers/tmp.js';

test('the seal of an unpacked tree changes when a file is rewritten, replaced, chmod-ed or added', () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, 'bin'));
    writeFileSync(join(dir.path, 'bin', 'app'), 'original');
    const first = JSON.stringify([...sealOf(dir.path)]);
    assert.equal(JSON.stringify([...sealOf(dir.path)]), first, 'stable while nothing changes');
    writeFileSync(join(dir.path, 'bin', 'app'), 'evil!!!!');
    assert.notEqual(JSON.stringify([...sealOf(dir.path)]), first, 'same size, new content: ctime moved');
    writeFileSync(join(dir.path, 'etc-ld.so.preload'), '/evil.so');
    assert.ok(sealOf(dir.path).has('etc-ld.so.preload'));
  } finally {
    dir.cleanup();
  }
});
