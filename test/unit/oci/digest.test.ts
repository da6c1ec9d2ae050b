import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertDigest, digestOf, parseDigest } from '../../../oci/digest.js';
import { OciError } from '../../../oci/errors.js';

const HEX = 'a'.repeat(64);

test('valid sha256 and sha512 digests parse', () => {
  assert.equal(parseDigest(`sha256:${HEX}`).hex, HEX);
  assert.equal(parseDigest(`sha512:${'b'.repeat(128)}`).algorithm, 'sha512');
});

const bad: [string, string][] = [
  [`sha256:${HEX.toUpperCase()}`, 'DIGEST_INVALID'],
  [`sha256:${HEX.slice(1)}`, 'DIGEST_INVALID'],
  ['sha256:../../etc/passwd', 'DIGEST_INVALID'],
  [`sha256:${HEX}\n`, 'DIGEST_INVALID'],
  [`md5:${'a'.repeat(32)}`, 'DIGEST_UNSUPPORTED'],
  [`sha512:${HEX}`, 'DIGEST_INVALID'],
  ['', 'DIGEST_INVALID'],
  ['sha256', 'DIGEST_INVALID'],
];
for (const [text, code] of bad) {
  test(`${JSON.stringify(text.slice(0, 30))} is refused with ${code}`, () => {
    assert.throws(
      () => parseDigest(text),
      (e: unknown) => e instanceof OciError && e.code === code,
    );
  });
}

test('digestOf and assertDigest agree, and a mismatch is DIGEST_MISMATCH', () => {
  const d = digestOf(Buffer.from('hello'));
  assert.equal(d.text, 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  assertDigest(Buffer.from('hello'), d);
  assert.throws(
    () => assertDigest(Buffer.from('hellO'), d),
    (e: unknown) => e instanceof OciError && e.code === 'DIGEST_MISMATCH',
  );
});
