import type { RemoteError } from '../errors.js';
import { isObject, parseStrictJson } from '../strict-json.js';

/** The first OCI error of an error body already read, when it has one. */
export function parseRemoteError(bytes: Uint8Array): RemoteError | undefined {
  try {
    const doc = parseStrictJson(bytes, { maxDepth: 16 });
    const first = isObject(doc) && Array.isArray(doc.errors) ? doc.errors[0] : undefined;
    if (!isObject(first) || typeof first.code !== 'string') return undefined;
    return {
      code: first.code.slice(0, 100),
      message: typeof first.message === 'string' ? first.message.slice(0, 2000) : '',
      ...(isObject(first.detail) ? { detail: first.detail } : {}),
    };
  } catch {
    return undefined;
  }
}
