import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { conformanceCases, outcome } from '../../helpers/sigstore-conformance.js';

/**
 * The sigstore-conformance bundle-verification corpus (70 cases, copied under
 * test/fixtures/sigstore/conformance): every case must give its expected outcome,
 * Rekor v2 included. How a case is decided is in test/helpers/sigstore-conformance.ts
 * (also used by the differential test against sigstore-go).
 */
describe('the sigstore-conformance bundle corpus', () => {
  const cases = conformanceCases();
  it('has all its cases', () => assert.equal(cases.length, 70));
  for (const c of cases) {
    it(`${c.name} ${c.verifies ? 'verifies' : 'fails'}`, () => {
      const got = outcome(c.dir);
      if (c.verifies) assert.equal(got, 'verified');
      else assert.notEqual(got, 'verified');
    });
  }
});
