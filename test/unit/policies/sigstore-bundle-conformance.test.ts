import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CORPUS, outcome } from '../../helpers/sigstore-conformance.js';

/**
 * The sigstore-conformance bundle-verification corpus (70 cases, copied under
 * test/fixtures/sigstore/conformance): every case must give its expected outcome,
 * Rekor v2 included (see test/helpers/sigstore-conformance for what verifying a case means).
 */
describe('the sigstore-conformance bundle corpus', () => {
  const cases = readdirSync(CORPUS, { withFileTypes: true }).filter((d) => d.isDirectory());
  it('has all its cases', () => assert.equal(cases.length, 70));
  for (const c of cases) {
    const fails = c.name.endsWith('_fail');
    it(`${c.name} ${fails ? 'fails' : 'verifies'}`, () => {
      const got = outcome(join(CORPUS, c.name));
      if (fails) assert.notEqual(got, 'verified');
      else assert.equal(got, 'verified');
    });
  }
});
