import { isObject, parseStrictJson } from '../../oci/strict-json.js';

/**
 * An in-toto statement (v0.1 or v1) as a DSSE envelope carries it: what it is about
 * (subjects, each with digests) and what it says (predicate type, predicate).
 * Parsed strictly and bounded; the caller checks that a subject names its digest.
 */
export interface Statement {
  readonly type: string;
  readonly predicateType: string;
  readonly subjects: readonly {
    readonly name?: string | undefined;
    readonly digest: Readonly<Record<string, string>>;
  }[];
  readonly predicate: unknown;
}

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const STATEMENT_TYPES: ReadonlySet<string> = new Set([
  'https://in-toto.io/Statement/v0.1',
  'https://in-toto.io/Statement/v1',
]);
export const MAX_SUBJECTS = 1024;

export function parseStatement(payloadType: string, payload: Uint8Array): Statement | string {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE)
    return `the DSSE payload type is ${JSON.stringify(payloadType)}, not ${IN_TOTO_PAYLOAD_TYPE}`;
  let doc: unknown;
  try {
    doc = parseStrictJson(payload, { maxDepth: 64 });
  } catch (err) {
    return `the in-toto statement is not valid JSON: ${(err as Error).message}`;
  }
  if (!isObject(doc)) return 'the in-toto statement is not a JSON object';
  const { _type: type, predicateType, subject, predicate } = doc;
  if (typeof type !== 'string' || !STATEMENT_TYPES.has(type))
    return `the statement type is ${JSON.stringify(type)}, not an in-toto Statement v0.1 or v1`;
  if (typeof predicateType !== 'string' || predicateType.length === 0) return 'the statement has no predicateType';
  if (!Array.isArray(subject) || subject.length === 0) return 'the statement has no subject';
  if (subject.length > MAX_SUBJECTS) return `the statement has more than ${MAX_SUBJECTS} subjects`;
  const subjects: Statement['subjects'][number][] = [];
  for (const [i, s] of subject.entries()) {
    if (!isObject(s) || !isObject(s.digest)) return `subject ${i} has no digest`;
    const digest: Record<string, string> = {};
    for (const [alg, value] of Object.entries(s.digest)) {
      if (typeof value !== 'string') return `subject ${i} digest ${alg} is not a string`;
      digest[alg] = value.toLowerCase();
    }
    if (s.name !== undefined && typeof s.name !== 'string') return `subject ${i} name is not a string`;
    subjects.push({ name: s.name as string | undefined, digest });
  }
  if (predicate !== undefined && predicate !== null && !isObject(predicate))
    return 'the statement predicate is not an object';
  return { type, predicateType, subjects, predicate: predicate ?? {} };
}

/** The subject that names `digest` (`sha256:<hex>`), if one does. */
export function subjectFor(statement: Statement, digest: string): Statement['subjects'][number] | undefined {
  const [alg, hex] = digest.split(':');
  return statement.subjects.find((s) => alg !== undefined && s.digest[alg] === hex);
}
