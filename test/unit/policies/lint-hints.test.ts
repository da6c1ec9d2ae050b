import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadError } from '../../../policies/errors.js';
import { compilePolicy } from '../../../policies/loader.js';

const diagnostics = async (text: string) => {
  try {
    await compilePolicy('p.yaml', text, () => Buffer.alloc(0));
  } catch (err) {
    if (err instanceof LoadError) return err.diagnostics;
    throw err;
  }
  return [];
};

test('a misspelt key or value gets a "did you mean" hint; a wrong shape says how to write it', async () => {
  const [typo] = await diagnostics('rules:\n  - scope: a.example\n    requires: []\n    accept: anything\n');
  assert.equal(typo?.line, 3);
  assert.match(typo?.hint ?? '', /did you mean "require"/);
  const [value] = await diagnostics('rules:\n  - scope: a.example\n    mode: Audit\n    accept: anything\n');
  assert.match(value?.hint ?? '', /did you mean audit/);
  const [shape] = await diagnostics('rules: a.example\n');
  assert.match(shape?.hint ?? '', /- item/);
  const [unknown] = await diagnostics('rules:\n  - scope: a.example\n    colour: blue\n    accept: anything\n');
  assert.match(unknown?.hint ?? '', /expected one of: scope, require/);
});
