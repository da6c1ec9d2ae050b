import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseDigest } from '../../../oci/digest.js';
import { compileContainersPolicy } from '../../../policies/containers-policy.js';
import { LoadError } from '../../../policies/errors.js';
import { gpgIdentityProblem, intendedRef, parseRef } from '../../../policies/gpg-identity.js';
import { compilePolicy } from '../../../policies/loader.js';
import { mostSpecific, scopeMatches, selectRule } from '../../../policies/scope.js';
import { fixture } from '../../helpers/fixtures.js';

/** Property tests (fast-check): the parsers never crash and always point at a place; scopes match as documented. */
const keys = (p: string) => (p.endsWith('.gpg') ? fixture('gpg-tv2/public-key.asc') : fixture('cosign-tv1/cosign.pub'));
const loadsOrExplains = async (load: () => Promise<unknown>, file: string) => {
  try {
    await load();
  } catch (err) {
    assert.ok(err instanceof LoadError, `not a LoadError: ${String(err)}`);
    assert.ok(err.diagnostics.length > 0);
    for (const d of err.diagnostics) {
      assert.equal(d.file, file);
      assert.ok(
        Number.isInteger(d.line) && d.line >= 1 && Number.isInteger(d.column) && d.column >= 1,
        JSON.stringify(d),
      );
      assert.ok(d.message.length > 0);
    }
  }
};

const component = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const host = fc.oneof(
  fc.constant('reg.example'),
  fc.constant('127.0.0.1:5000'),
  fc.constant('docker.io'),
  fc.constant('b.example.org'),
);
// Names as the gateway sees them: normalized (docker.io/x is docker.io/library/x).
const name = fc
  .tuple(host, fc.array(component, { minLength: 1, maxLength: 3 }))
  .map(([h, parts]) => parseRef(`${h}/${parts.join('/')}`)?.name ?? `${h}/${parts.join('/')}`);
const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    'reject',
    'accept-anything',
    'anything',
    'a.pub',
    'k.gpg',
    'enforce',
    'pin',
    'sha256:' + 'a'.repeat(64),
  ),
);
const keyName = fc.constantFrom(
  'version',
  'default',
  'rules',
  'revoked',
  'scope',
  'require',
  'accept',
  'reject',
  'mode',
  'tags',
  'index',
  'cosign',
  'gpg',
  'keys',
  'identity',
  'allOf',
  'anyOf',
  'atLeast',
  'of',
  'digest',
  'reason',
  'exact',
  'prefix',
  'signedPrefix',
  'bogus',
);
const tree: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('node'), { maxLength: 4 }),
    fc.dictionary(keyName, tie('node'), { maxKeys: 5 }),
  ),
})).node;

test('any policy-shaped YAML either compiles or is refused with file:line:column diagnostics', async () => {
  await fc.assert(
    fc.asyncProperty(tree, async (doc) => {
      await loadsOrExplains(() => compilePolicy('p.yaml', stringify(doc), keys), 'p.yaml');
    }),
    { numRuns: 300 },
  );
});

test('any text at all either compiles or is refused with positions (YAML and containers-policy.json)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 200 }), async (text) => {
      await loadsOrExplains(() => compilePolicy('p.yaml', text, keys), 'p.yaml');
      await loadsOrExplains(() => compileContainersPolicy('p.json', text, keys), 'p.json');
    }),
    { numRuns: 300 },
  );
});

test('well-formed rules always compile, and their scopes decide as the most specific prefix', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(name, { minLength: 1, maxLength: 6 }), name, async (scopes, subject) => {
      const text = stringify({
        rules: scopes.map((scope, i) => (i % 2 ? { scope, accept: 'anything' } : { scope, reject: `r${i}` })),
      });
      const policy = await compilePolicy('p.yaml', text, keys);
      const expected = scopes
        .filter((s) => subject === s || subject.startsWith(`${s}/`))
        .sort((a, b) => b.length - a.length)[0];
      assert.equal(mostSpecific(policy.rules, subject)?.scope, expected);
      assert.equal(selectRule(policy.rules, { name: subject, tag: 'latest' })?.scope, expected);
    }),
    { numRuns: 200 },
  );
});

test('a scope matches a name only at a "/" boundary', () => {
  fc.assert(
    fc.property(name, fc.string({ minLength: 1, maxLength: 8 }), (scope, suffix) => {
      assert.equal(scopeMatches(scope, scope), true);
      assert.equal(scopeMatches(scope, `${scope}/${suffix}`), true);
      if (!suffix.startsWith('/')) assert.equal(scopeMatches(scope, `${scope}${suffix}`), false);
    }),
  );
});

test('containers-policy.json order: a reference beats its repository, a repository beats a wildcard, a wildcard beats ""', () => {
  fc.assert(
    fc.property(name, fc.stringMatching(/^[a-z0-9]{1,8}$/), (repo, tag) => {
      const host = repo.split('/')[0] ?? '';
      const domain = host.replace(/:\d+$/, '').split('.').slice(1).join('.');
      const rules = [
        { scope: '', match: 'transport-default' as const },
        ...(domain ? [{ scope: `*.${domain}`, match: 'wildcard' as const }] : []),
        { scope: repo, match: 'prefix' as const },
        { scope: `${repo}:${tag}`, match: 'reference' as const },
      ];
      const d = parseDigest(`sha256:${'b'.repeat(64)}`);
      assert.equal(selectRule(rules, { name: repo, tag, digest: d })?.match, 'reference');
      assert.equal(selectRule(rules, { name: repo, tag: `${tag}x`, digest: d })?.match, 'prefix');
      assert.equal(
        selectRule(
          rules.filter((r) => r.match !== 'prefix' && r.match !== 'reference'),
          { name: repo, tag, digest: d },
        )?.match,
        domain ? 'wildcard' : 'transport-default',
      );
    }),
  );
});

test('a signature for exactly the reference pulled satisfies every identity rule that compares it', () => {
  fc.assert(
    fc.property(name, fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/), (repo, tag) => {
      const d = `sha256:${'d'.repeat(64)}`;
      const intended = intendedRef(repo, tag, d);
      for (const kind of ['matchRepoDigestOrExact', 'matchExact', 'matchRepository'] as const) {
        assert.equal(gpgIdentityProblem({ kind }, `${repo}:${tag}`, intended), undefined, kind);
      }
      assert.notEqual(gpgIdentityProblem({ kind: 'matchRepoDigestOrExact' }, `${repo}x:${tag}`, intended), undefined);
    }),
  );
});
