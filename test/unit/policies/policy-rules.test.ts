import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { parseDigest } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy, rejectEverythingPolicy } from '../../../policies/loader.js';
import { fixture } from '../../helpers/fixtures.js';

const digest = parseDigest(`sha256:${'e'.repeat(64)}`);
const noEvidence = { cosign: [], problems: [] };
const keys = (p: string) => (p === 'team.pub' ? fixture('cosign-tv1/cosign.pub') : Buffer.from(''));
const policy = await compilePolicy(
  'p.yaml',
  `
version: 1
default: reject
rules:
  - scope: reg.example/team
    require:
      - cosign: { keys: [team.pub] }
  - scope: reg.example/team/tools
    accept: anything
  - scope: reg.example/team/legacy
    reject: "retired"
  - scope: Docker.IO/library
    accept: anything
`,
  keys,
);

const decisions: [string, boolean, string][] = [
  ['reg.example/team/app', false, 'reg.example/team'],
  ['reg.example/team/tools', true, 'reg.example/team/tools'],
  ['reg.example/team/tools/x', true, 'reg.example/team/tools'],
  ['reg.example/team/legacy', false, 'reg.example/team/legacy'],
  ['reg.example/teamster/app', false, 'default'],
  ['other.example/x', false, 'default'],
  ['docker.io/library/alpine', true, 'docker.io/library'],
];
for (const [name, allowed, rule] of decisions) {
  test(`${name}: ${allowed ? 'admitted' : 'denied'} by ${rule}`, async () => {
    const d = await evaluate(policy, { name, digest }, noEvidence);
    assert.equal(d.allowed, allowed);
    assert.equal(d.rule, rule);
    assert.equal(d.policyDigest, policy.digest.text);
  });
}

test('a reject rule carries its message; the embedded default rejects everything', async () => {
  assert.equal(
    (await evaluate(policy, { name: 'reg.example/team/legacy', digest }, noEvidence)).reasons[0]?.message,
    'retired',
  );
  const d = await evaluate(await rejectEverythingPolicy(), { name: 'any.example/x', digest }, noEvidence);
  assert.equal(d.allowed, false);
  assert.equal(d.denial, 'policy.rejected');
});

test('an admitted index covers the children it lists', async () => {
  const d = await evaluate(
    policy,
    { name: 'reg.example/team/app', digest },
    { ...noEvidence, coveringIndex: `sha256:${'f'.repeat(64)}` },
  );
  assert.equal(d.allowed, true);
  assert.equal(d.reasons[0]?.code, 'signature.covered_by_index');
});

test('every problem in a policy is reported at once, each with its line and column', async () => {
  const text = [
    'version: 2', // 1
    'default: maybe', // 2
    'rules:', // 3
    '  - scope: reg.example/a', // 4
    '    require:', // 5
    '      - cosign: { keys: [missing.pub] }', // 6
    '  - scope: reg.example/a', // 7
    '    accept: anything', // 8
    '  - scope: "bad scope/"', // 9
    '    accept: everything', // 10
    '    colour: blue', // 11
    '  - scope: reg.example/b', // 12
    '    require: []', // 13
    '',
  ].join('\n');
  const err = await (async () => {
    try {
      await compilePolicy('bad.yaml', text, () => {
        throw Object.assign(new Error('nope'), { code: 'ENOENT' });
      });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof LoadError);
  assert.equal(err.code, 'POLICY_INVALID');
  const at = err.diagnostics.map((d) => `${d.line}:${d.column}`);
  assert.deepEqual(at, ['1:10', '2:10', '6:26', '7:12', '9:12', '10:13', '11:5', '13:14']);
  assert.ok(err.diagnostics.every((d) => d.file === 'bad.yaml'));
});

test('YAML syntax errors and duplicate keys are reported with positions', async () => {
  for (const text of ['rules: [\n', 'rules: []\nrules: []\n']) {
    await assert.rejects(
      () => compilePolicy('y.yaml', text, keys),
      (e: unknown) => e instanceof LoadError && e.diagnostics.length > 0 && e.diagnostics.every((d) => d.line >= 1),
    );
  }
});

test('a weak RSA key is refused at load time, at the line that names it', async () => {
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' });
  await assert.rejects(
    () =>
      compilePolicy(
        'w.yaml',
        'rules:\n  - scope: a.example\n    require:\n      - cosign: { keys: [weak.pub] }\n',
        () => Buffer.from(weak),
      ),
    (e: unknown) =>
      e instanceof LoadError &&
      e.code === 'POLICY_INVALID' &&
      e.diagnostics.length === 1 &&
      e.diagnostics[0]?.line === 4,
  );
});
