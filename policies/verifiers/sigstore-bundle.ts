import { createHash, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { Verifier } from '@sigstore/verify';
import { signedEntity } from './sigstore-entity.js';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { KeylessTrust, ReasonCode, TrustedKey } from '../model.js';
import { tryVerify } from './cosign.js';
import { keylessIdentity, type KeylessIdentity } from './fulcio-identity.js';
import { sigstoreFailureCode, sigstoreFailureMessage } from './sigstore-failure.js';

/**
 * Verifies one Sigstore bundle (v0.1, v0.2, v0.3: a message signature or a DSSE
 * envelope; signed by a Fulcio certificate or by a key), offline, against a trusted
 * root: for a certificate the chain to the root's authorities at the verified signing
 * time (Rekor SET or integrated time, checkpointed inclusion proof, RFC 3161
 * timestamps), its SCTs, the log entries matching this signature, and the signature
 * itself; for a key, the signature and any log entries it carries. @sigstore/verify
 * does the cryptography; this module bounds the input, picks the key, and refuses
 * identities that read two ways. It returns who signed and what was signed (a
 * message digest, or the DSSE payload); it does not judge either.
 */
export type BundleSigner =
  ({ readonly kind: 'keyless' } & KeylessIdentity) | { readonly kind: 'key'; readonly key: TrustedKey };

export type BundleContent =
  | { readonly kind: 'message'; readonly digest: string }
  | { readonly kind: 'dsse'; readonly payloadType: string; readonly payload: Buffer };

export type BundleVerification =
  | { readonly ok: true; readonly signer: BundleSigner; readonly content: BundleContent }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

export const BUNDLE_MEDIA_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.dev.sigstore.bundle+json;version=0.1',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
]);

const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A bundle's JSON, strictly parsed (no duplicate keys, bounded depth), of a known bundle media type. */
export function readBundle(bytes: Uint8Array): Record<string, unknown> | string {
  if (bytes.length > MAX_BUNDLE_BYTES) return `a bundle of ${bytes.length} bytes is larger than ${MAX_BUNDLE_BYTES}`;
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, { maxDepth: 16 });
  } catch (err) {
    return `the bundle is not valid JSON: ${(err as Error).message}`;
  }
  if (!isObject(doc)) return 'the bundle is not a JSON object';
  if (typeof doc.mediaType !== 'string' || !BUNDLE_MEDIA_TYPES.has(doc.mediaType))
    return `unknown bundle media type ${JSON.stringify(doc.mediaType)} (Sigstore bundles v0.1 to v0.3 are read)`;
  return doc;
}

/** DSSE's pre-authentication encoding: what a DSSE signature signs. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

interface Signed {
  /** The bytes the signature is over (the artifact, or the DSSE PAE). */
  readonly data: Buffer;
  readonly signature: Buffer;
  readonly content: BundleContent;
  /** The bundle as @sigstore/verify is given it, and the artifact to go with it. */
  readonly json: Record<string, unknown>;
  readonly artifact: Buffer | undefined;
}

/** What the bundle signs, read from its JSON before any verification. */
function signedPart(json: Record<string, unknown>, artifact: Uint8Array | undefined): Signed | string {
  const message = json.messageSignature;
  const envelope = json.dsseEnvelope;
  if ((message === undefined) === (envelope === undefined))
    return 'the bundle holds neither or both of a message signature and a DSSE envelope';
  if (isObject(message)) {
    if (artifact === undefined) return 'a message-signature bundle needs the artifact it signs';
    const sig = message.signature;
    if (typeof sig !== 'string' || sig.length === 0 || !BASE64.test(sig)) return 'the signature is not base64';
    const digest = isObject(message.messageDigest) ? message.messageDigest : undefined;
    if (digest?.algorithm !== 'SHA2_256' || typeof digest.digest !== 'string')
      return 'the message digest is not a SHA2_256 digest';
    const hex = Buffer.from(digest.digest, 'base64').toString('hex');
    const data = Buffer.from(artifact);
    if (createHash('sha256').update(data).digest('hex') !== hex)
      return 'the message digest is not the digest of the artifact';
    return {
      data,
      signature: Buffer.from(sig, 'base64'),
      content: { kind: 'message', digest: `sha256:${hex}` },
      json,
      artifact: data,
    };
  }
  if (!isObject(envelope)) return 'the DSSE envelope is not an object';
  const { payload, payloadType, signatures } = envelope;
  if (typeof payload !== 'string' || !BASE64.test(payload)) return 'the DSSE payload is not base64';
  if (typeof payloadType !== 'string' || payloadType.length === 0) return 'the DSSE envelope has no payload type';
  if (!Array.isArray(signatures) || signatures.length !== 1)
    return 'a DSSE envelope in a bundle carries exactly one signature';
  const sig = isObject(signatures[0]) ? signatures[0].sig : undefined;
  if (typeof sig !== 'string' || sig.length === 0 || !BASE64.test(sig)) return 'the DSSE signature is not base64';
  const body = Buffer.from(payload, 'base64');
  const data = pae(payloadType, body);
  const signature = Buffer.from(sig, 'base64');
  const content: BundleContent = { kind: 'dsse', payloadType, payload: body };
  const entries = isObject(json.verificationMaterial) ? json.verificationMaterial.tlogEntries : undefined;
  const kinds = Array.isArray(entries)
    ? entries.map((e) =>
        isObject(e) && isObject(e.kindVersion) ? `${e.kindVersion.kind}/${e.kindVersion.version}` : '',
      )
    : [];
  if (kinds.includes('hashedrekord/0.0.2')) {
    // Rekor v2 logs a DSSE signature as a hashedrekord over its PAE (rekor-v2 spec §6.1.4):
    // that is a message signature over the PAE bytes, and is verified as one.
    if (!kinds.every((k) => k === 'hashedrekord/0.0.2'))
      return 'the bundle mixes hashedrekord and other log entries for one DSSE signature';
    const { dsseEnvelope: _, ...rest } = json;
    return {
      data,
      signature,
      content,
      json: {
        ...rest,
        messageSignature: {
          messageDigest: { algorithm: 'SHA2_256', digest: createHash('sha256').update(data).digest('base64') },
          signature: sig,
        },
      },
      artifact: data,
    };
  }
  return { data, signature, content, json, artifact: undefined };
}

/** The PEM of the bundle's signing certificate, or undefined for a key-based bundle. */
function leafCertificate(json: Record<string, unknown>): string | undefined {
  const m = isObject(json.verificationMaterial) ? json.verificationMaterial : {};
  const raw = isObject(m.certificate)
    ? m.certificate.rawBytes
    : isObject(m.x509CertificateChain) && Array.isArray(m.x509CertificateChain.certificates)
      ? (m.x509CertificateChain.certificates[0] as { rawBytes?: unknown } | undefined)?.rawBytes
      : undefined;
  if (typeof raw !== 'string') return undefined;
  const b64 = raw.replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** Why the bundle's own chain is unacceptable: it may carry intermediates, never a root (roots come from the trusted root). */
function rootInChain(json: Record<string, unknown>): string | undefined {
  const m = isObject(json.verificationMaterial) ? json.verificationMaterial : {};
  const chain = isObject(m.x509CertificateChain) ? m.x509CertificateChain.certificates : undefined;
  if (!Array.isArray(chain)) return undefined;
  if (chain.length > 8) return `the bundle's certificate chain has ${chain.length} certificates`;
  for (const [i, c] of chain.entries()) {
    const raw = isObject(c) ? c.rawBytes : undefined;
    if (typeof raw !== 'string') return `certificate ${i} of the bundle's chain has no bytes`;
    try {
      const cert = new X509Certificate(Buffer.from(raw, 'base64'));
      if (cert.checkIssued(cert) && cert.verify(cert.publicKey))
        return `certificate ${i} of the bundle's chain is a self-signed root: roots come from the trusted root only`;
    } catch {
      return `certificate ${i} of the bundle's chain cannot be read`;
    }
  }
  return undefined;
}

/**
 * Verifies a bundle (from readBundle). With `keys`, only a key-based bundle signed by
 * one of them counts; without, only a keyless one whose certificate the root vouches for.
 */
export function verifySigstoreBundle(
  json: Record<string, unknown>,
  artifact: Uint8Array | undefined,
  trust: KeylessTrust,
  keys?: readonly TrustedKey[],
): BundleVerification {
  const signed = signedPart(json, artifact);
  if (typeof signed === 'string') return { ok: false, code: 'signature.invalid', message: signed };
  const leaf = leafCertificate(json);
  const root = rootInChain(json);
  if (root !== undefined) return { ok: false, code: 'signature.certificate_untrusted', message: root };
  const memoKey = createHash('sha256')
    .update(`${keys ? keys.map((k) => k.fingerprint).join(',') : 'keyless'}\0`)
    .update(JSON.stringify(signed.json))
    .update('\0')
    .update(signed.artifact ?? Buffer.alloc(0))
    .digest('hex');
  const memo = MEMO.get(trust);
  const known = memo?.get(memoKey);
  if (known) return known;
  const result = keys ? verifyKeyed(signed, leaf, trust, keys) : verifyKeyless(signed, leaf, trust);
  const cache = memo ?? new Map<string, BundleVerification>();
  if (cache.size >= MEMO_SIZE) cache.delete(cache.keys().next().value as string);
  cache.set(memoKey, result);
  MEMO.set(trust, cache);
  return result;
}

/** Verification is deterministic for the same bytes and root: decided again, it is remembered. */
const MEMO = new WeakMap<KeylessTrust, Map<string, BundleVerification>>();
const MEMO_SIZE = 1024;

function verifyKeyless(signed: Signed, leaf: string | undefined, trust: KeylessTrust): BundleVerification {
  if (leaf === undefined)
    return {
      ok: false,
      code: 'signature.untrusted_key',
      message: 'signed with a key, not keylessly: the bundle carries no Fulcio certificate',
    };
  // The cheap check first: an altered or replayed candidate stops here.
  if (!verifiesWith(signed, leafKey(leaf)))
    return {
      ok: false,
      code: 'signature.invalid',
      message: "the signature does not verify with its certificate's key (altered, or not this content's)",
    };
  let signer;
  try {
    signer = trust.verifier.verify(entityOf(signed));
  } catch (err) {
    return untrusted(err, trust);
  }
  const identity = keylessIdentity(signer, leaf);
  if (typeof identity === 'string') return { ok: false, code: 'signature.certificate_untrusted', message: identity };
  return { ok: true, signer: { kind: 'keyless', ...identity }, content: signed.content };
}

function verifyKeyed(
  signed: Signed,
  leaf: string | undefined,
  trust: KeylessTrust,
  keys: readonly TrustedKey[],
): BundleVerification {
  if (leaf !== undefined)
    return {
      ok: false,
      code: 'signature.untrusted_key',
      message: 'signed keylessly (the bundle carries a certificate), not with one of the trusted keys',
    };
  const key = keys.find((k) => tryVerify(k, signed.data, signed.signature) === 'valid');
  if (key === undefined)
    return {
      ok: false,
      code: 'signature.untrusted_key',
      message: 'no trusted key verifies this bundle (signed by another key, or altered after signing)',
    };
  try {
    trust.keyedVerifier(key.key).verify(entityOf(signed));
  } catch (err) {
    // A key-based bundle's own key is trusted: what fails is its log entry or timestamp, or the bundle itself.
    const code = sigstoreFailureCode(err);
    return untrusted(err, trust, code === 'signature.certificate_untrusted' ? 'signature.invalid' : code);
  }
  return { ok: true, signer: { kind: 'key', key }, content: signed.content };
}

function entityOf(signed: Signed): unknown {
  return signedEntity(signed.json, signed.artifact);
}

function untrusted(err: unknown, trust: KeylessTrust, code: ReasonCode = sigstoreFailureCode(err)) {
  return {
    ok: false as const,
    code,
    message: `the bundle does not verify against ${trust.source}${sigstoreFailureMessage(err)}`,
  };
}

function leafKey(pem: string): KeyObject | undefined {
  try {
    return new X509Certificate(pem).publicKey;
  } catch {
    return undefined;
  }
}

function verifiesWith(signed: Signed, key: KeyObject | undefined): boolean {
  if (key === undefined) return false;
  try {
    return key.asymmetricKeyType === 'ed25519'
      ? verify(null, signed.data, key, signed.signature)
      : verify(
          'sha256',
          signed.data,
          key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'der' } : key,
          signed.signature,
        );
  } catch {
    return false;
  }
}

/** A key-based verifier over a root's logs and timestamp authorities (for `keyedVerifier`). */
export function keyedVerifier(material: ReturnType<typeof import('@sigstore/verify').toTrustMaterial>, key: KeyObject) {
  return new Verifier(
    { ...material, publicKey: () => ({ publicKey: key, validFor: () => true }) },
    // A key is trusted by itself, as for a `.sig` signature; log entries and timestamps it carries are still checked.
    { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 },
  );
}
