import * as openpgp from 'openpgp';
import type { GpgTrustedKey } from './model.js';

/**
 * A keyring file of trusted OpenPGP public keys, armored (`gpg --export --armor`) or
 * binary (`gpg --export`). Every key in it is trusted. Refused with a reason: a
 * private key, an empty file, more than MAX_KEYS keys, RSA below 2048 bits, and DSA or
 * ElGamal primary keys (too weak for signatures made today).
 */
export const MAX_KEYS_PER_FILE = 64;

export async function parseGpgKeyring(bytes: Uint8Array, source: string): Promise<GpgTrustedKey[] | string> {
  const text = Buffer.from(bytes).toString('latin1').trimStart();
  let keys: openpgp.Key[];
  try {
    keys = text.startsWith('-----BEGIN PGP')
      ? await openpgp.readKeys({ armoredKeys: Buffer.from(bytes).toString('utf8') })
      : await openpgp.readKeys({ binaryKeys: bytes });
  } catch (err) {
    return `not an OpenPGP public key or keyring: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`;
  }
  if (keys.length === 0) return 'the keyring holds no keys';
  if (keys.length > MAX_KEYS_PER_FILE)
    return `the keyring holds ${keys.length} keys; at most ${MAX_KEYS_PER_FILE} per file`;
  const out: GpgTrustedKey[] = [];
  for (const key of keys) {
    const fingerprint = key.getFingerprint().toUpperCase();
    if (key.isPrivate()) return `key ${fingerprint} is a private key; give the public key (gpg --export)`;
    const info = key.getAlgorithmInfo();
    if (info.algorithm.startsWith('rsa') && (info.bits ?? 0) < 2048)
      return `key ${fingerprint} is RSA with ${info.bits ?? 0} bits; at least 2048 are required`;
    if (info.algorithm === 'dsa' || info.algorithm === 'elgamal')
      return `key ${fingerprint} is ${info.algorithm.toUpperCase()}, which is not accepted for signatures`;
    out.push({ source, fingerprint, key: key as openpgp.PublicKey });
  }
  return out;
}
