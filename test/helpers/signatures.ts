import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { CosignSignatureEvidence } from '../../policies/model.js';

/** A throwaway cosign-style key pair, its public key as PEM (for policy files). */
export function cosignTestKey(): { privateKey: KeyObject; pem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

/** A cosign simple-signing payload for `digest` under `identity`, signed with `key` (as `cosign sign` makes it). */
export function cosignEvidence(
  key: KeyObject,
  digest: string,
  identity: string,
  source = 'test',
): CosignSignatureEvidence {
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': identity },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: null,
    }),
  );
  return { source, payload, signature: sign('sha256', payload, key).toString('base64') };
}
