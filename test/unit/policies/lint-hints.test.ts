import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadError } from '../../../policies/errors.js';
import { compilePolicy } from '../../../policies/loader.js';
import { fixture } from '../../helpers/fixtures.js';

const diagnostics = async (text: string) => {
  try {
    await compilePolicy('p.yaml', text, () => fixture('cosign-tv1/cosign.pub'));
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

test('a missing required key is reported once, where the mapping is, not again at 1:1', async () => {
  const d = await diagnostics('rules:\n  - require:\n      - cosign: { identity: repository }\n');
  assert.ok(d.length >= 2);
  assert.ok(
    d.every((x) => x.line >= 2),
    JSON.stringify(d),
  );
  assert.ok(d.some((x) => /missing required key "scope"/.test(x.message)));
  assert.ok(d.some((x) => /either keys .* or keyless/.test(x.message)));
  const remap = await diagnostics(
    'rules:\n  - scope: a.example\n    require:\n      - cosign: { keys: [k.pub], identity: { prefix: a.example } }\n',
  );
  assert.ok(
    remap.every((x) => x.line >= 2) && remap.some((x) => /signedPrefix/.test(x.message)),
    JSON.stringify(remap),
  );
});

test('scopes and cosign identities that could never match are refused, with the fix', async () => {
  for (const scope of ['a.example/Team', 'a.example/x:1', 'nowhere', 'library/alpine']) {
    const [d] = await diagnostics(`rules:\n  - scope: ${scope}\n    accept: anything\n`);
    assert.equal(d?.line, 2, scope);
  }
  const [exact] = await diagnostics(
    'rules:\n  - scope: a.example\n    require:\n      - cosign: { keys: [k.pub], identity: { exact: "a.example/app:1" } }\n',
  );
  assert.equal(exact?.line, 4);
});

test('YAML aliases are named as such', async () => {
  const d = await diagnostics(
    'x: &req\n  - cosign: { keys: [k.pub] }\nrules:\n  - scope: a.example\n    require: *req\n',
  );
  assert.ok(
    d.some((x) => /alias/.test(x.message) && x.line === 5),
    JSON.stringify(d),
  );
});
