import { createHash, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, Verifier } from '@sigstore/verify';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { CosignSignatureEvidence, DsseEvidence, KeylessTrust, ReasonCode, SigstoreThresholds } from '../model.js';
import { parseSimpleSigningPayload, type CosignClaims } from './cosign.js';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../sigstore/public-good-root.js';
import { keylessIdentity } from './fulcio-identity.js';
import { keyedVerifier } from './sigstore-bundle.js';
import { signedEntity, withKeptEncodings } from './sigstore-entity.js';
import { sigstoreFailureCode, sigstoreFailureMessage } from './sigstore-failure.js';

/**
 * Verifies one keyless cosign signature in the `.sig` layer format (FORMATS §4.4):
 * the Fulcio certificate (`dev.sigstore.cosign/certificate`) must chain to a
 * certificate authority of the trusted root at the time the transparency log
 * vouches for (the Rekor SET in `dev.sigstore.cosign/bundle`, or an RFC 3161
 * timestamp), carry a valid SCT from a trusted CT log, and its key must verify the
 * signature over the exact payload bytes; the Rekor entry must be for this
 * signature. The layer is read as a Sigstore bundle v0.1 (what cosign's annotations
 * are) and verified offline by @sigstore/verify with the root's material.
 *
 * It returns the signer's identity (OIDC issuer, certificate subject) and the
 * payload's claims; it does NOT judge them: the requirement compares the identity,
 * the evaluator the digest, type and docker-reference.
 */
export type KeylessVerification =
  | {
      readonly ok: true;
      readonly issuer: string;
      readonly subject: string;
      /** Fulcio's extension claims of the certificate, by name (sourceRepositoryURI, buildTrigger, …). */
      readonly certificateClaims: Readonly<Record<string, string>>;
      /** The payload's claims, or why the payload is unusable (judged after the signer). */
      readonly claims: CosignClaims | string;
    }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_ANNOTATION_CHARS = 64 * 1024;

export function verifyKeylessSignature(evidence: CosignSignatureEvidence, trust: KeylessTrust): KeylessVerification {
  if (evidence.certificate === undefined)
    return {
      ok: false,
      code: 'signature.untrusted_key',
      message: 'signed with a key, not keylessly: the layer carries no Fulcio certificate',
    };
  if (evidence.rekorBundle === undefined)
    return {
      ok: false,
      code: 'signature.log_entry_invalid',
      message: 'no transparency log entry (dev.sigstore.cosign/bundle): a keyless signature must be logged in Rekor',
    };
  // The same bytes under the same root were decided before (a renewal, another tag): that answer stands.
  // Each field is JSON-encoded (so no field can run into the next) and the payload follows.
  const memoKey = createHash('sha256')
    .update(
      JSON.stringify([
        trust.source,
        evidence.signature,
        evidence.certificate,
        evidence.rekorBundle ?? null,
        evidence.timestamp ?? null,
      ]),
    )
    .update('\n')
    .update(evidence.payload)
    .digest('hex');
  const memo = MEMO.get(trust);
  const known = memo?.get(memoKey);
  if (known) return known;
  const bundle = bundleOf(evidence);
  if (typeof bundle === 'string') return { ok: false, code: 'signature.invalid', message: bundle };
  if (isRefusal(bundle)) return { ok: false, ...bundle };
  // The cheap check first: the signature must verify with its own certificate's key
  // (a forged or replayed candidate stops here, before the chain and the log are checked).
  let ownKey: boolean;
  try {
    const leaf = new X509Certificate(evidence.certificate);
    ownKey = verify(
      'sha256',
      evidence.payload,
      { key: leaf.publicKey, dsaEncoding: 'der' },
      Buffer.from(evidence.signature, 'base64'),
    );
  } catch {
    ownKey = false;
  }
  if (!ownKey)
    return {
      ok: false,
      code: 'signature.invalid',
      message: "the signature does not verify with its certificate's key (altered, or not this payload's)",
    };
  const result = verifyBundle(evidence, bundle, trust);
  const cache = memo ?? new Map<string, KeylessVerification>();
  if (cache.size >= MEMO_SIZE) cache.delete(cache.keys().next().value as string);
  cache.set(memoKey, result);
  MEMO.set(trust, cache);
  return result;
}

/** Verification is deterministic for the same bytes and root: decided again (a renewal, another tag), it is remembered. */
const MEMO = new WeakMap<KeylessTrust, Map<string, KeylessVerification>>();
const MEMO_SIZE = 1024;

function verifyBundle(
  evidence: CosignSignatureEvidence,
  bundle: Record<string, unknown>,
  trust: KeylessTrust,
): KeylessVerification {
  let signer;
  try {
    const entity = signedEntity(bundle, evidence.payload);
    signer = trust.verifier.verify(entity);
  } catch (err) {
    return {
      ok: false,
      code: sigstoreFailureCode(err),
      message: `the keyless signature does not verify against ${trust.source}${sigstoreFailureMessage(err)}`,
    };
  }
  const identity = keylessIdentity(signer, evidence.certificate as string);
  if (typeof identity === 'string') return { ok: false, code: 'signature.certificate_untrusted', message: identity };
  return { ok: true, ...identity, claims: parseSimpleSigningPayload(evidence.payload) };
}

/** A log entry that is not this signature's: refused with its own reason, before any verification. */
export interface LogEntryRefusal {
  readonly code: 'signature.log_entry_invalid';
  readonly message: string;
}
const logEntryRefusal = (problem: string): LogEntryRefusal => ({
  code: 'signature.log_entry_invalid',
  message: `the Rekor bundle annotation: ${problem}`,
});
export const isRefusal = (v: object): v is LogEntryRefusal =>
  (v as { code?: unknown }).code === 'signature.log_entry_invalid';

/** cosign's `.sig` layer annotations as the Sigstore bundle v0.1 JSON they amount to. */
function bundleOf(e: CosignSignatureEvidence): Record<string, unknown> | LogEntryRefusal | string {
  const sig = e.signature;
  if (sig.length === 0 || sig.length > MAX_ANNOTATION_CHARS || sig.length % 4 !== 0 || !BASE64.test(sig))
    return 'the signature annotation is not valid base64';
  const leaf = pemToDer(e.certificate ?? '');
  if (typeof leaf === 'string') return `the certificate annotation: ${leaf}`;
  const tlogEntries: Record<string, unknown>[] = [];
  if (e.rekorBundle !== undefined) {
    const entry = rekorEntry(e.rekorBundle, leaf);
    if (typeof entry === 'string') return logEntryRefusal(entry);
    tlogEntries.push(entry);
  }
  const timestampVerificationData = timestampData(e.timestamp);
  if (typeof timestampVerificationData === 'string') return timestampVerificationData;
  const digest = createHashBase64(e.payload);
  return {
    mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
    verificationMaterial: {
      x509CertificateChain: { certificates: [{ rawBytes: leaf.toString('base64') }] },
      tlogEntries,
      ...(timestampVerificationData ? { timestampVerificationData } : {}),
    },
    messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest }, signature: sig },
  };
}

/**
 * A cosign `.att` layer (a DSSE envelope, with the Fulcio certificate and Rekor entry
 * in its annotations) as the Sigstore bundle v0.1 JSON it amounts to.
 */
export function dsseBundleOf(e: DsseEvidence): Record<string, unknown> | LogEntryRefusal | string {
  if (e.certificate === undefined) return 'the attestation carries no Fulcio certificate';
  if (e.rekorBundle === undefined)
    return {
      code: 'signature.log_entry_invalid',
      message: 'no transparency log entry (dev.sigstore.cosign/bundle): a keyless attestation must be logged in Rekor',
    };
  const leaf = pemToDer(e.certificate);
  if (typeof leaf === 'string') return `the certificate annotation: ${leaf}`;
  const entry = rekorEntry(e.rekorBundle, leaf, ['intoto/0.0.2', 'dsse/0.0.1']);
  if (typeof entry === 'string') return logEntryRefusal(entry);
  let envelope: unknown;
  try {
    envelope = parseStrictJson(e.envelope, { maxDepth: 8 });
  } catch (err) {
    return `the DSSE envelope is not valid JSON: ${(err as Error).message}`;
  }
  if (!isObject(envelope)) return 'the DSSE envelope is not a JSON object';
  const timestampVerificationData = timestampData(e.timestamp);
  if (typeof timestampVerificationData === 'string') return timestampVerificationData;
  return {
    mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
    verificationMaterial: {
      x509CertificateChain: { certificates: [{ rawBytes: leaf.toString('base64') }] },
      tlogEntries: [entry],
      ...(timestampVerificationData ? { timestampVerificationData } : {}),
    },
    dsseEnvelope: envelope,
  };
}

/** The certificate (PEM, base64) a Rekor entry body names as the signer's, by kind. */
function loggedCertificate(entry: Record<string, unknown>): unknown {
  const spec = isObject(entry.spec) ? entry.spec : {};
  if (entry.kind === 'hashedrekord')
    return isObject(spec.signature) && isObject(spec.signature.publicKey)
      ? spec.signature.publicKey.content
      : undefined;
  if (entry.kind === 'intoto') {
    const env = isObject(spec.content) && isObject(spec.content.envelope) ? spec.content.envelope : {};
    const sigs = Array.isArray(env.signatures) ? env.signatures : [];
    return sigs.length === 1 && isObject(sigs[0]) ? sigs[0].publicKey : undefined;
  }
  const sigs = Array.isArray(spec.signatures) ? spec.signatures : [];
  return sigs.length === 1 && isObject(sigs[0]) ? sigs[0].verifier : undefined;
}

/** `{SignedEntryTimestamp, Payload: {body, integratedTime, logIndex, logID}}` as a bundle's tlog entry. */
function rekorEntry(
  text: string,
  leaf: Buffer,
  kinds: readonly string[] = ['hashedrekord/0.0.1'],
): Record<string, unknown> | string {
  const doc = parseBounded(text);
  if (!isObject(doc) || !isObject(doc.Payload)) return 'not a Rekor bundle';
  const { SignedEntryTimestamp: set } = doc;
  const { body, integratedTime, logIndex, logID } = doc.Payload;
  if (typeof set !== 'string' || !BASE64.test(set)) return 'no SignedEntryTimestamp';
  if (typeof body !== 'string' || !BASE64.test(body)) return 'no body';
  if (!Number.isSafeInteger(integratedTime) || !Number.isSafeInteger(logIndex)) return 'bad integratedTime or logIndex';
  if (typeof logID !== 'string' || !/^[0-9a-f]{64}$/.test(logID)) return 'bad logID';
  const entry = parseBounded(Buffer.from(body, 'base64').toString('utf8'));
  // An entry of the kind cosign logs (hashedrekord 0.0.1 for a .sig signature; intoto or dsse for an attestation) of this very certificate.
  if (!isObject(entry) || !kinds.includes(`${String(entry.kind)}/${String(entry.apiVersion)}`))
    return `the log entry is not a ${kinds.join(' or ')} entry`;
  const logged = loggedCertificate(entry);
  const loggedCert = typeof logged === 'string' ? pemToDer(Buffer.from(logged, 'base64').toString('utf8')) : undefined;
  if (!Buffer.isBuffer(loggedCert) || !loggedCert.equals(leaf))
    return "the log entry is for another certificate than the signature's";
  return {
    logIndex: String(logIndex),
    logId: { keyId: Buffer.from(logID, 'hex').toString('base64') },
    kindVersion: { kind: entry.kind, version: entry.apiVersion },
    integratedTime: String(integratedTime),
    inclusionPromise: { signedEntryTimestamp: set },
    // Exactly Rekor's bytes: the SET signs them.
    canonicalizedBody: body,
  };
}

/** `dev.sigstore.cosign/rfc3161timestamp` as a bundle's timestampVerificationData (undefined when absent). */
function timestampData(text: string | undefined): Record<string, unknown> | undefined | string {
  if (text === undefined) return undefined;
  const ts = parseBounded(text);
  const signed = isObject(ts) ? ts.SignedRFC3161Timestamp : undefined;
  if (typeof signed !== 'string' || !BASE64.test(signed))
    return 'the RFC 3161 timestamp annotation has no SignedRFC3161Timestamp';
  return { rfc3161Timestamps: [{ signedTimestamp: signed }] };
}

function parseBounded(text: string): unknown {
  if (text.length > MAX_ANNOTATION_CHARS) return undefined;
  try {
    return parseStrictJson(Buffer.from(text, 'utf8'), { maxDepth: 12 });
  } catch {
    return undefined;
  }
}

function pemToDer(pem: string): Buffer | string {
  if (pem.length > MAX_ANNOTATION_CHARS) return 'too large';
  const m = /^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\s*$/.exec(pem.trimStart());
  if (!m) return 'not one PEM certificate';
  return Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64');
}

function createHashBase64(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/**
 * A Sigstore trusted root (trusted_root.json) as verification material. Refused: a
 * root that is not one, and a log or authority without a `validFor.start` (a key
 * with no start would be trusted for any time before it existed).
 */
export function loadTrustedRoot(json: unknown, source: string): KeylessTrust | string {
  if (!isObject(json)) return 'not a trusted root (a JSON object)';
  const known = ['mediaType', 'tlogs', 'certificateAuthorities', 'ctlogs', 'timestampAuthorities'];
  const unknown = Object.keys(json).filter((k) => !known.includes(k));
  if (unknown.length > 0) return `unknown fields ${unknown.join(', ')}`;
  const period = (v: unknown, where: string): string | undefined => {
    if (!isObject(v)) return `${where} has no validFor`;
    const start = typeof v.start === 'string' ? Date.parse(v.start) : NaN;
    if (!Number.isFinite(start)) return `${where} has no valid validFor.start`;
    if (v.end !== undefined && v.end !== null) {
      const end = typeof v.end === 'string' ? Date.parse(v.end) : NaN;
      if (!Number.isFinite(end) || end <= start) return `${where} has a validFor.end that is not after its start`;
    }
    return undefined;
  };
  for (const field of ['tlogs', 'ctlogs'] as const) {
    const list = json[field];
    if (!Array.isArray(list) || list.length === 0) return `${field} must list at least one log`;
    for (const [i, log] of list.entries()) {
      const problem = period(
        isObject(log) && isObject(log.publicKey) ? log.publicKey.validFor : undefined,
        `${field}[${i}].publicKey`,
      );
      if (problem) return problem;
    }
  }
  const cas = json.certificateAuthorities;
  if (!Array.isArray(cas) || cas.length === 0) return 'certificateAuthorities must list at least one authority';
  for (const [i, ca] of cas.entries()) {
    const problem = period(isObject(ca) ? ca.validFor : undefined, `certificateAuthorities[${i}]`);
    if (problem) return problem;
    const chain = isObject(ca) && isObject(ca.certChain) ? ca.certChain.certificates : undefined;
    if (!Array.isArray(chain) || chain.length === 0) return `certificateAuthorities[${i}] has no certificates`;
  }
  const tsas = json.timestampAuthorities ?? [];
  if (!Array.isArray(tsas)) return 'timestampAuthorities must be a list';
  for (const [i, tsa] of tsas.entries()) {
    const problem = period(isObject(tsa) ? tsa.validFor : undefined, `timestampAuthorities[${i}]`);
    if (problem) return problem;
  }
  try {
    const material = withKeptEncodings(toTrustMaterial(TrustedRoot.fromJSON(json)));
    const keyed = new WeakMap<KeyObject, ReturnType<typeof keyedVerifier>>();
    const variants = new Map<string, KeylessTrust>();
    const trust = (thresholds: SigstoreThresholds): KeylessTrust => {
      const id = `${thresholds.tlog}/${thresholds.sct}/${thresholds.timestamps}`;
      const known = variants.get(id);
      if (known) return known;
      const made: KeylessTrust = {
        source,
        thresholds,
        withThresholds: trust,
        verifier: new Verifier(material, {
          tlogThreshold: thresholds.tlog,
          ctlogThreshold: thresholds.sct,
          timestampThreshold: thresholds.timestamps,
        }),
        keyedVerifier(key) {
          let v = keyed.get(key);
          if (v === undefined) keyed.set(key, (v = keyedVerifier(material, key)));
          return v;
        },
      };
      variants.set(id, made);
      return made;
    };
    return trust(DEFAULT_THRESHOLDS);
  } catch (err) {
    return `not a usable trusted root: ${(err as Error).message}`;
  }
}

/** One of each: a log entry, an SCT, a verified time (as cosign and sigstore-go require by default). */
export const DEFAULT_THRESHOLDS: SigstoreThresholds = { tlog: 1, sct: 1, timestamps: 1 };

let publicGood: KeylessTrust | undefined;

/** The shipped Sigstore public-good root, checked and loaded once. */
export function publicGoodTrust(): KeylessTrust {
  if (publicGood === undefined) {
    const loaded = loadTrustedRoot(PUBLIC_GOOD_TRUSTED_ROOT, 'the Sigstore public-good root');
    if (typeof loaded === 'string') throw new Error(`the shipped Sigstore public-good root is unusable: ${loaded}`);
    publicGood = loaded;
  }
  return publicGood;
}
