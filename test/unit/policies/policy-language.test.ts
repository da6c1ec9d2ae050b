import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import type { Evidence } from '../../../policies/model.js';
import { cosignEvidence, cosignTestKey } from '../../helpers/signatures.js';

const NAME = 'reg.example/team/app';
const digest = parseDigest(`sha256:${'c'.repeat(64)}`);
const a = cosignTestKey();
const b = cosignTestKey();
const c = cosignTestKey();
const files: Record<string, string> = { 'a.pub': a.pem, 'b.pub': b.pem, 'c.pub': c.pem };
const compile = (text: string) => compilePolicy('p.yaml', text, (p) => Buffer.from(files[p] ?? ''));
const rule = (body: string) => compile(`rules:\n  - scope: reg.example/team\n${body}`);
const signedBy = (...keys: { privateKey: import('node:crypto').KeyObject }[]): Evidence => ({
  cosign: keys.map((k, i) => cosignEvidence(k.privateKey, digest.text, NAME, `sig ${i}`)),
  problems: [],
});
const decide = async (
  policyText: Promise<Awaited<ReturnType<typeof compile>>>,
  evidence: Evidence,
  extra: { kind?: 'image' | 'index'; coveringIndex?: string } = {},
) =>
  evaluate(
    await policyText,
    { name: NAME, digest, kind: extra.kind },
    { ...evidence, coveringIndex: extra.coveringIndex },
  );

const K = (k: string) => `{ cosign: { keys: [${k}] } }`;

test('atLeast 2 of 3 signers: two distinct signers are enough, one is not', async () => {
  const p = rule(`    require:\n      - atLeast: 2\n        of: [${K('a.pub')}, ${K('b.pub')}, ${K('c.pub')}]\n`);
  assert.equal((await decide(p, signedBy(a, c))).allowed, true);
  const one = await decide(p, signedBy(b));
  assert.equal(one.allowed, false);
  assert.ok(one.reasons.some((r) => r.code === 'requirement.not_enough'));
  assert.ok(
    one.reasons.some((r) => r.code === 'signature.untrusted_key'),
    'each member says why it failed',
  );
  assert.equal(one.denial, 'requirement.not_enough', 'the headline of a failed combinator');
});

const KS = (...k: string[]) => `{ cosign: { keys: [${k.join(', ')}] } }`;

test('combinators count signers: one signature never satisfies two members whose key lists overlap', async () => {
  const p = rule(
    `    require:\n      - atLeast: 2\n        of: [${KS('a.pub', 'b.pub')}, ${KS('b.pub', 'c.pub')}, ${KS('c.pub')}]\n`,
  );
  const one = await decide(p, signedBy(b));
  assert.equal(one.allowed, false);
  assert.equal(one.denial, 'requirement.not_enough');
  assert.ok(one.reasons.some((r) => r.code === 'signature.counted_elsewhere'));
  assert.equal(one.reasons.filter((r) => r.code === 'signature.verified').length, 1, 'b counts once');
  // Two signatures by the same key are still one signer.
  assert.equal((await decide(p, signedBy(b, b))).allowed, false);
  assert.equal((await decide(p, signedBy(a, b))).allowed, true);
  assert.equal((await decide(p, signedBy(b, c))).allowed, true);
});

test('which signer counts where does not depend on the order of the signatures', async () => {
  // The first member could take b, leaving the second nothing: the search gives it c instead.
  const p = rule(`    require:\n      - allOf: [${KS('b.pub', 'c.pub')}, ${KS('b.pub')}]\n`);
  for (const order of [signedBy(b, c), signedBy(c, b)]) {
    const d = await decide(p, order);
    assert.equal(d.allowed, true);
    assert.deepEqual(
      d.reasons.filter((r) => r.code === 'signature.verified').map((r) => r.key),
      ['c.pub', 'b.pub'],
    );
  }
});

test("the entries of a rule's require list need a signer each too", async () => {
  const p = rule(`    require:\n      - ${KS('a.pub', 'b.pub')}\n      - ${KS('b.pub')}\n`);
  const d = await decide(p, signedBy(b));
  assert.equal(d.allowed, false);
  assert.equal(d.denial, 'requirement.not_enough');
  assert.equal((await decide(p, signedBy(a, b))).allowed, true);
});

test('anyOf and allOf nest, and requirements in a list are all needed', async () => {
  const p = rule(`    require:\n      - anyOf: [${K('a.pub')}, { allOf: [${K('b.pub')}, ${K('c.pub')}] }]\n`);
  assert.equal((await decide(p, signedBy(a))).allowed, true);
  assert.equal((await decide(p, signedBy(b, c))).allowed, true);
  assert.equal((await decide(p, signedBy(b))).allowed, false);
  const both = rule(`    require:\n      - ${K('a.pub')}\n      - ${K('b.pub')}\n`);
  assert.equal((await decide(both, signedBy(a))).allowed, false);
  assert.equal((await decide(both, signedBy(a, b))).allowed, true);
});

test('warn and audit admit what enforce denies, keep the verdict, and are not attestable', async () => {
  for (const mode of ['warn', 'audit'] as const) {
    const d = await decide(rule(`    mode: ${mode}\n    require: [${K('a.pub')}]\n`), signedBy(b));
    assert.equal(d.allowed, true);
    assert.equal(d.verdict, false);
    assert.equal(d.mode, mode);
    assert.equal(d.attestable, false);
    assert.equal(d.reasons[0]?.code, 'policy.not_enforced');
    assert.equal(d.denial, 'signature.untrusted_key');
  }
  const passing = await decide(rule(`    mode: warn\n    require: [${K('a.pub')}]\n`), signedBy(a));
  assert.deepEqual([passing.allowed, passing.verdict, passing.attestable], [true, true, true]);
  const enforced = await decide(rule(`    require: [${K('a.pub')}]\n`), signedBy(b));
  assert.deepEqual([enforced.allowed, enforced.verdict, enforced.mode], [false, false, 'enforce']);
});

test('a revoked digest is denied whatever signs it, even under accept: anything or audit mode', async () => {
  const p = compile(
    `revoked:\n  - { digest: ${digest.text}, reason: "CVE-2026-0001" }\nrules:\n  - scope: reg.example/team\n    mode: audit\n    accept: anything\n`,
  );
  const d = await decide(p, signedBy(a));
  assert.equal(d.allowed, false);
  assert.equal(d.denial, 'policy.revoked');
  assert.match(d.reasons[0]?.message ?? '', /CVE-2026-0001/);
});

test('index: signed-index admits platform manifests only through a signed index; signed-platform never through one', async () => {
  const cover = `sha256:${'f'.repeat(64)}`;
  const signedIndex = rule(`    index: signed-index\n    require: [${K('a.pub')}]\n`);
  assert.equal((await decide(signedIndex, signedBy(a))).denial, 'index.not_covered', 'its own signature is not enough');
  assert.equal((await decide(signedIndex, signedBy(), { coveringIndex: cover })).allowed, true);
  assert.equal(
    (await decide(signedIndex, signedBy(a), { kind: 'index' })).allowed,
    true,
    'the index itself must be signed',
  );
  const signedPlatform = rule(`    index: signed-platform\n    require: [${K('a.pub')}]\n`);
  assert.equal((await decide(signedPlatform, signedBy(), { coveringIndex: cover })).allowed, false);
  assert.equal((await decide(signedPlatform, signedBy(a))).allowed, true);
  const index = await decide(signedPlatform, signedBy(), { kind: 'index' });
  assert.deepEqual(
    [index.allowed, index.attestable],
    [true, false],
    'an index is only a list; nothing is attested for it',
  );
  const either = rule(`    require: [${K('a.pub')}]\n`);
  assert.equal((await decide(either, signedBy(), { coveringIndex: cover })).allowed, true);
  assert.equal((await decide(either, signedBy(a))).allowed, true);
});

test('bad combinators, modes and revocations are load errors at their lines', async () => {
  const bad = [
    `    require:\n      - atLeast: 3\n        of: [${K('a.pub')}, ${K('b.pub')}]\n`,
    `    require:\n      - atLeast: 1\n`,
    `    require:\n      - anyOf: []\n`,
    `    require:\n      - { cosign: { keys: [a.pub] }, anyOf: [${K('b.pub')}] }\n`,
    `    mode: lenient\n    accept: anything\n`,
    `    tags: float\n    accept: anything\n`,
    `    index: both\n    accept: anything\n`,
  ];
  for (const body of bad)
    await assert.rejects(
      rule(body),
      (e: unknown) => e instanceof LoadError && e.diagnostics.every((d) => d.line >= 3),
      body,
    );
  await assert.rejects(
    compile('revoked: [sha256:nothex]\nrules: []\n'),
    (e: unknown) => e instanceof LoadError && e.diagnostics[0]?.line === 1,
  );
});
