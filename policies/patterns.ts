import { RE2JS } from 're2js';

const MAX_PATTERN = 512;
/** Longer certificate fields never match a pattern (they are not what Fulcio issues). */
const MAX_MATCHED = 4096;

/**
 * An identity pattern in RE2 syntax (as cosign's --certificate-identity-regexp), matched
 * by RE2JS in linear time against the whole value: anchored at both ends whatever it
 * contains, bounded in length, and without back-references or lookaround, which RE2 has not.
 */
export function compileIdentityPattern(text: string): { test(value: string): boolean } | string {
  if (text.length === 0 || text.length > MAX_PATTERN) return `a pattern is 1 to ${MAX_PATTERN} characters`;
  try {
    const re = RE2JS.compile(text);
    return { test: (value: string) => value.length <= MAX_MATCHED && re.matches(value) };
  } catch (err) {
    return `not an RE2 regular expression: ${(err as Error).message}`;
  }
}
