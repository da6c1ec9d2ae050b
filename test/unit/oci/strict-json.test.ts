import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OciError } from '../../../oci/errors.js';
import { parseStrictJson } from '../../../oci/strict-json.js';

test('parses what JSON.parse parses, to the same value', () => {
  const text = '{"a":[1,2.5,-3e2,true,false,null,"x\\u0041\\n"],"b":{"c":{}}}';
  assert.deepEqual(parseStrictJson(text), JSON.parse(text));
});

const refused: [string, string, string | Uint8Array][] = [
  ['duplicate keys', 'JSON_DUPLICATE_KEY', '{"a":1,"a":2}'],
  ['duplicate keys written differently', 'JSON_DUPLICATE_KEY', '{"a":1,"\\u0061":2}'],
  ['nesting beyond the limit', 'JSON_TOO_DEEP', '['.repeat(100) + ']'.repeat(100)],
  ['trailing data', 'JSON_INVALID', '{} {}'],
  ['a trailing comma', 'JSON_INVALID', '{"a":1,}'],
  ['a raw control character', 'JSON_INVALID', '"a\u0001"'],
  ['invalid UTF-8', 'JSON_INVALID', Uint8Array.from([0x22, 0xff, 0x22])],
];
for (const [what, code, input] of refused) {
  test(`${what} is ${code}`, () => {
    assert.throws(
      () => parseStrictJson(input),
      (e: unknown) => e instanceof OciError && e.code === code,
    );
  });
}
