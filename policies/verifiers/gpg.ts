import * as openpgp from 'openpgp';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { GpgSignatureEvidence, GpgTrustedKey, ReasonCode } from '../model.js';

/**
 * Verifies one GPG "simple signing" signature as containers/image does
 * (containers-signature(5), FORMATS §3.1–3.2): the blob is a binary OpenPGP signed
 * message carrying exactly one signature; the signature is checked with the trusted
 * key before a byte of the payload is parsed; the payload JSON is then parsed
 * strictly. It returns the claims; the evaluator judges digest and identity.
 *
 * Like podman and skopeo as Debian and Fedora build them (GPGME), the signature must
 * be made by a trusted key itself: a signature by a subkey is refused, with a reason
 * that names the key it belongs to. A revoked or expired key, an expired signature,
 * and a key below 2048 bits (RSA) are refused with their own reasons.
 */
export interface GpgClaims {
  readonly digest: string;
  readonly identity: string;
  readonly created: Date;
}

export type GpgVerification =
  | { readonly ok: true; readonly key: GpgTrustedKey; readonly claims: GpgClaims }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

/** containers/image's limit for one signature (iolimits.maxSignatureBodySize). */
export const MAX_GPG_SIGNATURE_BYTES = 4 * 1024 * 1024;
const PAYLOAD_TYPE = 'atomic container signature';
/** The signed payload is a few hundred bytes: a compressed message may not inflate beyond this (decompression bombs). */
const MAX_PAYLOAD_BYTES = 256 * 1024;
const CONFIG = { minRSABits: 2048, maxDecompressedMessageSize: MAX_PAYLOAD_BYTES };

export async function verifyGpgSignature(
  evidence: GpgSignatureEvidence,
  keys: readonly GpgTrustedKey[],
  now: Date,
): Promise<GpgVerification> {
  const fail = (code: ReasonCode, message: string): GpgVerification => ({ ok: false, code, message });
  const blob = evidence.blob;
  if (blob.length === 0 || blob.length > MAX_GPG_SIGNATURE_BYTES)
    return fail(
      'signature.invalid',
      `signature blob of ${blob.length} bytes (1 to ${MAX_GPG_SIGNATURE_BYTES} accepted)`,
    );
  if (blob[0] === 0x2d)
    return fail(
      'signature.invalid',
      'the signature is ASCII-armored; simple signing signatures are binary OpenPGP messages',
    );
  let message: openpgp.Message<Uint8Array>;
  try {
    message = await openpgp.readMessage({ binaryMessage: blob, config: CONFIG });
  } catch (err) {
    return fail('signature.invalid', `not an OpenPGP message: ${short(err)}`);
  }
  const ids = message.getSigningKeyIDs();
  if (ids.length !== 1)
    return fail('signature.invalid', `the message carries ${ids.length} signatures; exactly one is accepted`);
  const keyId = ids[0] as openpgp.KeyID;
  const signer = keys.find((k) => k.key.getKeyID().equals(keyId));
  if (!signer) {
    const parent = keys.find((k) => k.key.getKeys(keyId).length > 0);
    if (parent) {
      return fail(
        'signature.untrusted_key',
        `signed by subkey ${keyId.toHex().toUpperCase()} of ${parent.source} (${parent.fingerprint}); only signatures by the trusted primary key are accepted, as podman and skopeo do`,
      );
    }
    return fail(
      'signature.untrusted_key',
      `signed by key ID ${keyId.toHex().toUpperCase()}, which is not among the trusted keys`,
    );
  }
  const who = `${signer.source} (${signer.fingerprint})`;
  if (await signer.key.isRevoked(undefined, undefined, now))
    return fail('signature.key_revoked', `the signing key ${who} is revoked`);
  const expires = await signer.key.getExpirationTime();
  if (expires instanceof Date && expires.getTime() <= now.getTime())
    return fail('signature.key_expired', `the signing key ${who} expired on ${expires.toISOString()}`);
  let data: Uint8Array;
  let created: Date;
  try {
    const result = await openpgp.verify({
      message,
      verificationKeys: [signer.key],
      expectSigned: true,
      format: 'binary',
      // Time is judged below, as containers/image (GPGME) judges it: a signature whose
      // creation time is ahead of this clock is accepted (a signer's clock may run ahead);
      // the key must be neither revoked nor expired now, the signature not expired now,
      // and the key must be older than the signature. OpenPGP.js would refuse the first.
      date: null as unknown as Date,
      config: CONFIG,
    });
    const sig = result.signatures[0];
    if (!sig || result.signatures.length !== 1) return fail('signature.invalid', 'expected exactly one signature');
    await sig.verified;
    const packet = (await sig.signature).packets[0];
    // The one-pass packet named the primary key; the signature packet itself must say so too
    // (a subkey's signature behind an edited one-pass packet would verify with the subkey).
    if (!sig.keyID.equals(signer.key.getKeyID()) || !packet?.issuerKeyID.equals(signer.key.getKeyID())) {
      return fail(
        'signature.untrusted_key',
        `the signature was made by key ${sig.keyID.toHex().toUpperCase()}, not by the primary key ${signer.fingerprint} its header names`,
      );
    }
    const issuer = packet.issuerFingerprint;
    if (issuer && Buffer.from(issuer).toString('hex').toUpperCase() !== signer.fingerprint) {
      return fail(
        'signature.untrusted_key',
        `the signature names issuer ${Buffer.from(issuer).toString('hex').toUpperCase()}, not the primary key ${signer.fingerprint}`,
      );
    }
    if (!packet?.created) return fail('signature.invalid', 'the signature has no creation time');
    created = packet.created;
    const keyCreated = signer.key.getCreationTime();
    if (keyCreated.getTime() > created.getTime()) {
      return fail(
        'signature.invalid',
        `the signature (${created.toISOString()}) is older than the key ${who} (${keyCreated.toISOString()})`,
      );
    }
    const lifetime = packet.signatureNeverExpires ? undefined : packet.signatureExpirationTime;
    if (typeof lifetime === 'number' && lifetime > 0 && created.getTime() + lifetime * 1000 <= now.getTime()) {
      return fail(
        'signature.invalid',
        `the signature expired on ${new Date(created.getTime() + lifetime * 1000).toISOString()}`,
      );
    }
    data = result.data;
  } catch (err) {
    return fail('signature.invalid', `signature by ${who} does not verify: ${short(err)}`);
  }
  const claims = parsePayload(data);
  if (typeof claims === 'string') return fail('signature.payload_invalid', claims);
  return { ok: true, key: signer, claims: { ...claims, created } };
}

/**
 * The signed JSON, strictly: exactly `critical` and `optional`; `critical` exactly
 * `type`, `image`, `identity`; `type` exactly "atomic container signature"; `image`
 * exactly `docker-manifest-digest`; `identity` exactly `docker-reference`;
 * `optional.creator` a string and `optional.timestamp` an integer when present.
 * Returns why not as a string.
 */
export function parsePayload(bytes: Uint8Array): { digest: string; identity: string } | string {
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, { maxDepth: 8 });
  } catch (err) {
    return `the signed payload is not valid JSON: ${short(err)}`;
  }
  const exactly = (o: unknown, keys: string[], where: string): Record<string, unknown> | string => {
    if (!isObject(o)) return `${where} is not an object`;
    const have = Object.keys(o).sort();
    if (have.length !== keys.length || keys.some((k) => !(k in o)))
      return `${where} must have exactly ${keys.join(', ')} (has ${have.join(', ') || 'nothing'})`;
    return o;
  };
  const top = exactly(doc, ['critical', 'optional'], 'the payload');
  if (typeof top === 'string') return top;
  const critical = exactly(top.critical, ['identity', 'image', 'type'], 'critical');
  if (typeof critical === 'string') return critical;
  if (critical.type !== PAYLOAD_TYPE) return `critical.type is ${JSON.stringify(critical.type)}, not "${PAYLOAD_TYPE}"`;
  const image = exactly(critical.image, ['docker-manifest-digest'], 'critical.image');
  if (typeof image === 'string') return image;
  const identity = exactly(critical.identity, ['docker-reference'], 'critical.identity');
  if (typeof identity === 'string') return identity;
  const digest = image['docker-manifest-digest'];
  const reference = identity['docker-reference'];
  if (typeof digest !== 'string') return 'critical.image.docker-manifest-digest is not a string';
  if (typeof reference !== 'string') return 'critical.identity.docker-reference is not a string';
  if (!isObject(top.optional)) return 'optional is not an object';
  const { creator, timestamp } = top.optional;
  if (creator !== undefined && typeof creator !== 'string') return 'optional.creator is not a string';
  if (timestamp !== undefined && !Number.isSafeInteger(timestamp)) return 'optional.timestamp is not an integer';
  return { digest, identity: reference };
}

function short(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 200) ?? '';
}
