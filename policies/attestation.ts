import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { isObject, parseStrictJson } from '../oci/strict-json.js';

/**
 * The gateway's verification attestation: an in-toto Statement v1 whose predicate is
 * a SLSA Verification Summary (https://slsa.dev/verification_summary/v1), in a DSSE
 * envelope (secure-systems-lab/dsse v1.0) signed with the gateway's ECDSA P-256 key.
 * Building and signing are pure; verification returns the claims it checked, and
 * the caller decides whether they fit (subject digest, freshness).
 */
export const VSA_PREDICATE_TYPE = 'https://slsa.dev/verification_summary/v1';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const MAX_ENVELOPE_BYTES = 256 * 1024;

export interface ResourceRef {
  readonly uri: string;
  readonly digest: Readonly<Record<string, string>>;
  /** in-toto ResourceDescriptor annotations, e.g. who made a signature (`dev.portcullis.signer`). */
  readonly annotations?: Readonly<Record<string, string>> | undefined;
}

export interface VerificationSummaryInput {
  /** The name the image was served under: `gateway-prefix/repo` as clients pulled it, or the canonical name. */
  readonly subjectName: string;
  readonly subjectDigest: string;
  readonly verifierId: string;
  readonly verifierVersion: string;
  readonly timeVerified: Date;
  /** The upstream reference that was verified, e.g. `docker://ghcr.io/team/app@sha256:…`. */
  readonly resourceUri: string;
  readonly policy: ResourceRef;
  /** The signatures that made the decision, by digest. */
  readonly inputAttestations: readonly ResourceRef[];
  /**
   * When this gateway first admitted the digest in this repository. Renewal moves
   * timeVerified forward, never this: a client that switches digests compares it.
   */
  readonly firstAdmitted?: Date | undefined;
}

/** The subject annotation (in-toto ResourceDescriptor `annotations`) carrying firstAdmitted. */
export const FIRST_ADMITTED_ANNOTATION = 'dev.portcullis.firstAdmitted';

export interface Statement {
  readonly _type: string;
  readonly subject: readonly { name: string; digest: Record<string, string>; annotations?: Record<string, string> }[];
  readonly predicateType: string;
  readonly predicate: Record<string, unknown>;
}

export function verificationSummary(input: VerificationSummaryInput): Statement {
  const [alg, hex] = input.subjectDigest.split(':') as [string, string];
  return {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [
      {
        name: input.subjectName,
        digest: { [alg]: hex },
        ...(input.firstAdmitted
          ? { annotations: { [FIRST_ADMITTED_ANNOTATION]: input.firstAdmitted.toISOString() } }
          : {}),
      },
    ],
    predicateType: VSA_PREDICATE_TYPE,
    predicate: {
      verifier: { id: input.verifierId, version: { portcullis: input.verifierVersion } },
      timeVerified: input.timeVerified.toISOString(),
      resourceUri: input.resourceUri,
      policy: { uri: input.policy.uri, digest: { ...input.policy.digest } },
      inputAttestations: input.inputAttestations.map((a) => ({
        uri: a.uri,
        digest: { ...a.digest },
        ...(a.annotations ? { annotations: { ...a.annotations } } : {}),
      })),
      verificationResult: 'PASSED',
      // Portcullis checks signatures against a policy; it makes no SLSA build-track claim.
      verifiedLevels: ['SLSA_BUILD_LEVEL_0'],
      slsaVersion: '1.0',
    },
  };
}

/** DSSE pre-authentication encoding (dsse protocol.md). */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

export interface Envelope {
  readonly payload: string;
  readonly payloadType: string;
  readonly signatures: readonly { keyid: string; sig: string }[];
}

/** Signs a statement; the envelope's bytes are what is stored and served. */
export function signStatement(statement: Statement, privateKey: KeyObject, keyid = ''): Buffer {
  return signStatementBy(statement, [{ key: privateKey, keyid }]);
}

/**
 * Signs a statement with several keys, one DSSE signature each (a key rotation: the
 * new key and the ones clients may still pin). A verifier needs one that verifies.
 */
export function signStatementBy(
  statement: Statement,
  signers: readonly { readonly key: KeyObject; readonly keyid: string }[],
): Buffer {
  const body = Buffer.from(JSON.stringify(statement));
  const message = pae(IN_TOTO_PAYLOAD_TYPE, body);
  const envelope: Envelope = {
    payload: body.toString('base64'),
    payloadType: IN_TOTO_PAYLOAD_TYPE,
    signatures: signers.map((s) => ({
      keyid: s.keyid,
      sig: sign('sha256', message, { key: s.key, dsaEncoding: 'der' }).toString('base64'),
    })),
  };
  return Buffer.from(JSON.stringify(envelope));
}

export type AttestationProblem =
  | 'attestation.malformed'
  | 'attestation.bad_signature'
  | 'attestation.wrong_type'
  | 'attestation.wrong_subject'
  | 'attestation.not_passed'
  | 'attestation.expired';

export class AttestationError extends Error {
  constructor(
    readonly code: AttestationProblem,
    message: string,
  ) {
    super(message);
    this.name = 'AttestationError';
  }
}

export interface VerifiedSummary {
  readonly subjectName: string;
  readonly verifierId: string;
  readonly subjectDigests: readonly string[];
  readonly timeVerified: Date;
  readonly verificationResult: string;
  readonly resourceUri: string;
  readonly policyDigest: string | undefined;
  /** When the gateway first admitted the digest (its signed word); undefined from older gateways. */
  readonly firstAdmitted?: Date | undefined;
}

const B64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** What an attestation must say to be accepted. */
export interface SummaryExpectation {
  /** The manifest digest about to be used: the statement must name exactly this one subject. */
  readonly digest: string;
  readonly now: Date;
  readonly maxAgeMs: number;
  /** When set, the statement's subject name must be exactly this (`registry/repository`). */
  readonly subjectName?: string | undefined;
}

/**
 * Verifies a DSSE envelope with `publicKey` and checks the verification summary it
 * carries against `expect`: one subject, exactly the expected digest; PASSED; made
 * no longer than `maxAgeMs` ago and not in the future (5 minutes of clock skew).
 * Only the exact verified payload bytes are parsed, never the envelope again.
 */
export function verifySummaryEnvelope(
  bytes: Uint8Array,
  publicKey: KeyObject,
  expect: SummaryExpectation,
): VerifiedSummary {
  const summary = readSummaryEnvelope(bytes, publicKey);
  if (summary.subjectDigests.length !== 1 || summary.subjectDigests[0] !== expect.digest) {
    throw new AttestationError(
      'attestation.wrong_subject',
      `the attestation is for ${summary.subjectDigests.join(', ') || 'no digest'}, not ${expect.digest}`,
    );
  }
  if (expect.subjectName !== undefined && summary.subjectName !== expect.subjectName) {
    throw new AttestationError(
      'attestation.wrong_subject',
      `the attestation is for ${summary.subjectName || 'an unnamed image'}, not ${expect.subjectName}`,
    );
  }
  if (summary.verificationResult !== 'PASSED') {
    throw new AttestationError(
      'attestation.not_passed',
      `the attestation says ${summary.verificationResult || 'nothing'}, not PASSED`,
    );
  }
  const age = expect.now.getTime() - summary.timeVerified.getTime();
  if (age > expect.maxAgeMs || age < -5 * 60_000) {
    throw new AttestationError(
      'attestation.expired',
      age < 0
        ? `the attestation was made ${summary.timeVerified.toISOString()}, ahead of this machine's clock`
        : `the attestation was made ${summary.timeVerified.toISOString()}, ${formatAge(age)} ago: older than the allowed ${formatAge(expect.maxAgeMs)} (--max-age)`,
    );
  }
  return summary;
}

/** 30 d, 12 h, 5 min, 40 s: the largest unit that says it. */
export function formatAge(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'min'],
  ];
  for (const [size, name] of units) if (ms >= size) return `${Math.floor(ms / size)} ${name}`;
  return `${Math.floor(ms / 1000)} s`;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Signature and shape only; callers that act on an attestation use verifySummaryEnvelope. */
function readSummaryEnvelope(bytes: Uint8Array, publicKey: KeyObject): VerifiedSummary {
  if (bytes.length > MAX_ENVELOPE_BYTES)
    throw new AttestationError('attestation.malformed', `envelope larger than ${MAX_ENVELOPE_BYTES} bytes`);
  let env: unknown;
  try {
    env = parseStrictJson(bytes, { maxDepth: 8 });
  } catch (err) {
    throw new AttestationError('attestation.malformed', `envelope is not valid JSON: ${(err as Error).message}`);
  }
  if (
    !isObject(env) ||
    typeof env.payload !== 'string' ||
    typeof env.payloadType !== 'string' ||
    !Array.isArray(env.signatures)
  ) {
    throw new AttestationError('attestation.malformed', 'not a DSSE envelope');
  }
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    throw new AttestationError(
      'attestation.wrong_type',
      `payloadType ${env.payloadType} is not ${IN_TOTO_PAYLOAD_TYPE}`,
    );
  if (!B64.test(env.payload)) throw new AttestationError('attestation.malformed', 'payload is not base64');
  const body = Buffer.from(
    env.payload,
    env.payload.includes('-') || env.payload.includes('_') ? 'base64url' : 'base64',
  );
  const message = pae(env.payloadType, body);
  const ok = env.signatures.slice(0, 16).some((s) => {
    if (!isObject(s) || typeof s.sig !== 'string' || !B64.test(s.sig)) return false;
    const sig = Buffer.from(s.sig, 'base64');
    try {
      return (
        verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, sig) ||
        (sig.length === 64 && verify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig))
      );
    } catch {
      return false;
    }
  });
  if (!ok)
    throw new AttestationError(
      'attestation.bad_signature',
      'no signature on the envelope verifies with the pinned gateway key',
    );
  let st: unknown;
  try {
    st = parseStrictJson(body, { maxDepth: 16 });
  } catch (err) {
    throw new AttestationError('attestation.malformed', `statement is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(st) || st._type !== IN_TOTO_STATEMENT_V1 || !Array.isArray(st.subject) || !isObject(st.predicate)) {
    throw new AttestationError('attestation.malformed', 'not an in-toto Statement v1');
  }
  if (st.predicateType !== VSA_PREDICATE_TYPE)
    throw new AttestationError(
      'attestation.wrong_type',
      `predicateType ${String(st.predicateType)} is not ${VSA_PREDICATE_TYPE}`,
    );
  const p = st.predicate;
  const time =
    typeof p.timeVerified === 'string' && RFC3339.test(p.timeVerified) ? new Date(p.timeVerified) : undefined;
  if (!time || Number.isNaN(time.getTime()))
    throw new AttestationError('attestation.malformed', 'timeVerified is missing or invalid');
  const subjectDigests = st.subject.flatMap((s) =>
    isObject(s) && isObject(s.digest)
      ? Object.entries(s.digest)
          .filter(([, v]) => typeof v === 'string')
          .map(([a, v]) => `${a}:${String(v)}`)
      : [],
  );
  const policy =
    isObject(p.policy) && isObject(p.policy.digest) && typeof p.policy.digest.sha256 === 'string'
      ? `sha256:${p.policy.digest.sha256}`
      : undefined;
  const first = st.subject[0];
  const admittedText =
    isObject(first) && isObject(first.annotations) ? first.annotations[FIRST_ADMITTED_ANNOTATION] : undefined;
  const firstAdmitted =
    typeof admittedText === 'string' && RFC3339.test(admittedText) ? new Date(admittedText) : undefined;
  return {
    ...(firstAdmitted && !Number.isNaN(firstAdmitted.getTime()) ? { firstAdmitted } : {}),
    subjectName: isObject(first) && typeof first.name === 'string' ? first.name : '',
    verifierId: isObject(p.verifier) && typeof p.verifier.id === 'string' ? p.verifier.id : '',
    subjectDigests,
    timeVerified: time,
    policyDigest: policy,
    verificationResult: typeof p.verificationResult === 'string' ? p.verificationResult : '',
    resourceUri: typeof p.resourceUri === 'string' ? p.resourceUri : '',
  };
}

/** Loads a PEM private key and checks it is ECDSA P-256. */
export function parseSigningKey(pem: string): KeyObject | string {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    return `cannot parse private key: ${(err as Error).message}`;
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    return 'the gateway signing key must be ECDSA P-256';
  return key;
}

export function publicKeyPem(privateKey: KeyObject): string {
  return createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string;
}
