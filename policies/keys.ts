import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { TrustedKey } from './model.js';

/**
 * Public keys for cosign verification: PEM SubjectPublicKeyInfo (`PUBLIC KEY`) of
 * ECDSA P-256/P-384, RSA (2048 bits or more) or Ed25519. Anything else is refused
 * with a reason, so a weak or unexpected key never becomes trusted by accident.
 */
export function parsePublicKey(pem: string, source: string): TrustedKey | string {
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) return 'not a PEM "PUBLIC KEY" (SubjectPublicKeyInfo)';
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    return `cannot parse public key: ${(err as Error).message}`;
  }
  const der = key.export({ type: 'spki', format: 'der' });
  const fingerprint = createHash('sha256').update(der).digest('hex');
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    if (details.namedCurve === 'prime256v1') return { source, fingerprint, algorithm: 'ecdsa-p256', key };
    if (details.namedCurve === 'secp384r1') return { source, fingerprint, algorithm: 'ecdsa-p384', key };
    return `unsupported elliptic curve ${details.namedCurve ?? 'unknown'} (P-256 or P-384)`;
  }
  if (type === 'rsa') {
    if ((details.modulusLength ?? 0) < 2048)
      return `RSA key of ${details.modulusLength} bits is too weak (2048 or more)`;
    return { source, fingerprint, algorithm: 'rsa', key };
  }
  if (type === 'ed25519') return { source, fingerprint, algorithm: 'ed25519', key };
  return `unsupported key type ${type ?? 'unknown'} (ECDSA, RSA or Ed25519)`;
}
