import { verify } from 'node:crypto';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { CosignSignatureEvidence, ReasonCode, TrustedKey } from '../model.js';

/**
 * Verifies one cosign key-based signature (FORMATS §4.2–4.3): the base64 annotation
 * `dev.cosignproject.cosign/signature` over the exact payload bytes, with one of the
 * trusted keys. It returns the claims the payload makes; it does NOT judge them —
 * the evaluator checks digest, type and identity, so no verifier can forget them.
 */
export interface CosignClaims {
  readonly type: string;
  readonly digest: string;
  readonly identity: string;
}

export type CosignVerification =
  | { readonly ok: true; readonly key: TrustedKey; readonly claims: CosignClaims }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_SIGNATURE_CHARS = 8192;

export function verifyCosignSignature(
  evidence: CosignSignatureEvidence,
  keys: readonly TrustedKey[],
): CosignVerification {
  const text = evidence.signature;
  if (text.length === 0 || text.length > MAX_SIGNATURE_CHARS || text.length % 4 !== 0 || !BASE64.test(text)) {
    return { ok: false, code: 'signature.invalid', message: 'the signature annotation is not valid base64' };
  }
  const signature = Buffer.from(text, 'base64');
  const payload = evidence.payload;
  let signer: TrustedKey | undefined;
  let wellFormed = false;
  for (const key of keys) {
    const outcome = tryVerify(key, payload, signature);
    if (outcome === 'valid') {
      signer = key;
      break;
    }
    if (outcome === 'invalid') wellFormed = true;
  }
  if (!signer) {
    return wellFormed
      ? {
          ok: false,
          code: 'signature.untrusted_key',
          message: 'no trusted key verifies this signature (signed by another key, or altered after signing)',
        }
      : { ok: false, code: 'signature.invalid', message: 'the signature is malformed for every trusted key type' };
  }
  const claims = parseSimpleSigningPayload(payload);
  if (typeof claims === 'string') return { ok: false, code: 'signature.payload_invalid', message: claims };
  return { ok: true, key: signer, claims };
}

export function tryVerify(key: TrustedKey, payload: Uint8Array, signature: Buffer): 'valid' | 'invalid' | 'malformed' {
  try {
    const ok =
      key.algorithm === 'ed25519'
        ? verify(null, payload, key.key, signature)
        : verify(
            'sha256',
            payload,
            key.algorithm.startsWith('ecdsa') ? { key: key.key, dsaEncoding: 'der' } : key.key,
            signature,
          );
    return ok ? 'valid' : 'invalid';
  } catch {
    // OpenSSL throws on a signature it cannot even decode (bad DER, wrong length).
    return 'malformed';
  }
}

/** The simple-signing payload, parsed with exact field sets as containers/image does. */
export function parseSimpleSigningPayload(payload: Uint8Array): CosignClaims | string {
  let doc: unknown;
  try {
    doc = parseStrictJson(payload, { maxDepth: 8 });
  } catch (err) {
    return `payload is not valid JSON: ${(err as Error).message}`;
  }
  if (!isObject(doc) || !exactKeys(doc, ['critical'], ['optional']))
    return 'payload must hold exactly "critical" and optionally "optional"';
  const { critical, optional } = doc;
  if (optional !== undefined && optional !== null && !isObject(optional))
    return 'payload "optional" must be an object or null';
  if (!isObject(critical) || !exactKeys(critical, ['identity', 'image', 'type']))
    return 'payload "critical" must hold exactly identity, image and type';
  const { identity, image, type } = critical;
  if (
    !isObject(identity) ||
    !exactKeys(identity, ['docker-reference']) ||
    typeof identity['docker-reference'] !== 'string'
  ) {
    return 'payload critical.identity must hold exactly a docker-reference string';
  }
  if (
    !isObject(image) ||
    !exactKeys(image, ['docker-manifest-digest']) ||
    typeof image['docker-manifest-digest'] !== 'string'
  ) {
    return 'payload critical.image must hold exactly a docker-manifest-digest string';
  }
  if (typeof type !== 'string') return 'payload critical.type must be a string';
  return { type, digest: image['docker-manifest-digest'], identity: identity['docker-reference'] };
}

function exactKeys(obj: Record<string, unknown>, required: string[], optional: string[] = []): boolean {
  const keys = Object.keys(obj);
  return required.every((k) => k in obj) && keys.every((k) => required.includes(k) || optional.includes(k));
}
