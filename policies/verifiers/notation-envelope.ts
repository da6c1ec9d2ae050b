import { cborHead, CborError, decodeCbor, isTagged, type CborValue } from './cbor.js';
import { parseStrictJson } from '../../oci/strict-json.js';

/**
 * Notary Project signature envelopes (the JWS and COSE_Sign1 forms of the Notary
 * Project signature specification) read into one shape. Reading checks the envelope's
 * own rules — required and critical signed attributes, the signing scheme, the payload
 * content type — but not the signature or the certificates (see notation.ts).
 */
export const JWS_MEDIA_TYPE = 'application/jose+json';
export const COSE_MEDIA_TYPE = 'application/cose';
export const PAYLOAD_TYPE = 'application/vnd.cncf.notary.payload.v1+json';
export const MAX_ENVELOPE_BYTES = 256 * 1024;

export type NotationAlg = 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512';
export type SigningScheme = 'notary.x509' | 'notary.x509.signingAuthority';

export interface NotationEnvelope {
  readonly format: 'jws' | 'cose';
  readonly alg: NotationAlg;
  readonly scheme: SigningScheme;
  readonly signingTime?: Date | undefined;
  readonly authenticSigningTime?: Date | undefined;
  readonly expiry?: Date | undefined;
  /** The signed payload bytes (a Notary Project payload: `{"targetArtifact": descriptor}`). */
  readonly payload: Buffer;
  /** What the signature is over: the JWS signing input, or the COSE Sig_structure. */
  readonly signedBytes: Buffer;
  /** The signature (RSASSA-PSS, or ECDSA as r‖s). */
  readonly signature: Buffer;
  /** The certificate chain, signing certificate first, DER. */
  readonly certificates: readonly Buffer[];
  /** The RFC 3161 timestamp token countersigning the signature, when there is one. */
  readonly timestamp?: Buffer | undefined;
}

export class EnvelopeError extends Error {}

const NOTARY = 'io.cncf.notary.';
const SCHEME = `${NOTARY}signingScheme`;
const SIGNING_TIME = `${NOTARY}signingTime`;
const AUTHENTIC_TIME = `${NOTARY}authenticSigningTime`;
const EXPIRY = `${NOTARY}expiry`;
const PLUGIN = `${NOTARY}verificationPlugin`;
const PLUGIN_MIN = `${NOTARY}verificationPluginMinVersion`;
const TIMESTAMP = `${NOTARY}timestampSignature`;
const AGENT = `${NOTARY}signingAgent`;
const MAX_CERTIFICATES = 10;

const COSE_ALGS: ReadonlyMap<number, NotationAlg> = new Map([
  [-37, 'PS256'],
  [-38, 'PS384'],
  [-39, 'PS512'],
  [-7, 'ES256'],
  [-35, 'ES384'],
  [-36, 'ES512'],
]);
const JWS_ALGS: readonly NotationAlg[] = ['PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

export function readEnvelope(mediaType: string, bytes: Uint8Array): NotationEnvelope {
  if (bytes.length > MAX_ENVELOPE_BYTES) throw new EnvelopeError(`the envelope is over ${MAX_ENVELOPE_BYTES} bytes`);
  if (mediaType === JWS_MEDIA_TYPE) return readJws(bytes);
  if (mediaType === COSE_MEDIA_TYPE) return readCose(bytes);
  throw new EnvelopeError(`${JSON.stringify(mediaType)} is not a Notary Project envelope type`);
}

/** Signed attributes both forms share, after each form has decoded its header. */
interface Attributes {
  readonly alg: NotationAlg;
  readonly contentType: unknown;
  readonly crit: readonly string[];
  readonly present: ReadonlySet<string>;
  readonly scheme: unknown;
  readonly signingTime: Date | undefined;
  readonly authenticSigningTime: Date | undefined;
  readonly expiry: Date | undefined;
}

/** The critical-attribute and signing-scheme rules of the signature specification. */
function checkAttributes(a: Attributes): SigningScheme {
  if (a.contentType !== PAYLOAD_TYPE)
    throw new EnvelopeError(`the payload content type is ${JSON.stringify(a.contentType)}, not ${PAYLOAD_TYPE}`);
  if (a.scheme !== 'notary.x509' && a.scheme !== 'notary.x509.signingAuthority')
    throw new EnvelopeError(
      `signing scheme ${JSON.stringify(a.scheme)} is not notary.x509 or notary.x509.signingAuthority`,
    );
  if (new Set(a.crit).size !== a.crit.length) throw new EnvelopeError('the critical attribute list repeats a name');
  for (const name of a.crit) {
    if (!a.present.has(name)) throw new EnvelopeError(`critical attribute ${name} is not in the signed attributes`);
    if (name === PLUGIN || name === PLUGIN_MIN)
      throw new EnvelopeError(`the signature needs a verification plugin (${name}), which the gateway does not run`);
    if (![SCHEME, AUTHENTIC_TIME, EXPIRY].includes(name))
      throw new EnvelopeError(`critical attribute ${name} is not one the gateway understands`);
  }
  for (const name of [SCHEME, ...[AUTHENTIC_TIME, EXPIRY, PLUGIN, PLUGIN_MIN].filter((n) => a.present.has(n))]) {
    if (!a.crit.includes(name)) throw new EnvelopeError(`${name} must be marked critical`);
  }
  if (a.scheme === 'notary.x509') {
    if (a.signingTime === undefined) throw new EnvelopeError(`scheme notary.x509 needs ${SIGNING_TIME}`);
    if (a.present.has(AUTHENTIC_TIME)) throw new EnvelopeError(`scheme notary.x509 must not carry ${AUTHENTIC_TIME}`);
  } else if (a.authenticSigningTime === undefined) {
    throw new EnvelopeError(`scheme notary.x509.signingAuthority needs ${AUTHENTIC_TIME}`);
  }
  return a.scheme;
}

function readJws(bytes: Uint8Array): NotationEnvelope {
  let top: unknown;
  try {
    top = parseStrictJson(Buffer.from(bytes), { maxDepth: 8 });
  } catch (err) {
    throw new EnvelopeError(`the JWS envelope is not JSON: ${(err as Error).message}`);
  }
  const o = record(top, 'the JWS envelope');
  only(o, ['payload', 'protected', 'header', 'signature'], 'the JWS envelope');
  const protectedText = b64url(o['protected'], 'protected');
  const payloadText = b64url(o['payload'], 'payload');
  const signature = Buffer.from(b64url(o['signature'], 'signature'), 'base64url');
  let header: Record<string, unknown>;
  try {
    header = record(parseStrictJson(Buffer.from(protectedText, 'base64url'), { maxDepth: 4 }), 'the protected header');
  } catch (err) {
    if (err instanceof EnvelopeError) throw err;
    throw new EnvelopeError(`the protected header is not JSON: ${(err as Error).message}`);
  }
  const alg = header['alg'];
  if (typeof alg !== 'string' || !(JWS_ALGS as readonly string[]).includes(alg))
    throw new EnvelopeError(`alg ${JSON.stringify(alg)} is not one of ${JWS_ALGS.join(', ')}`);
  const crit = header['crit'];
  if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === 'string'))
    throw new EnvelopeError('crit must be a non-empty list of names');
  const time = (name: string): Date | undefined => {
    const v = header[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !RFC3339.test(v) || Number.isNaN(Date.parse(v)))
      throw new EnvelopeError(`${name} must be an RFC 3339 time`);
    return new Date(Date.parse(v));
  };
  const attributes: Attributes = {
    alg: alg as NotationAlg,
    contentType: header['cty'],
    crit: crit as string[],
    present: new Set(Object.keys(header).filter((k) => !['alg', 'cty', 'crit'].includes(k))),
    scheme: header[SCHEME],
    signingTime: time(SIGNING_TIME),
    authenticSigningTime: time(AUTHENTIC_TIME),
    expiry: time(EXPIRY),
  };
  const scheme = checkAttributes(attributes);
  const unprotected = record(o['header'], 'the unprotected header');
  only(unprotected, ['x5c', TIMESTAMP, AGENT], 'the unprotected header');
  const x5c = unprotected['x5c'];
  if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > MAX_CERTIFICATES)
    throw new EnvelopeError(`x5c must list 1 to ${MAX_CERTIFICATES} certificates`);
  const certificates = x5c.map((c, i) => {
    if (typeof c !== 'string' || !BASE64.test(c)) throw new EnvelopeError(`x5c[${i}] is not base64`);
    return Buffer.from(c, 'base64');
  });
  const ts = unprotected[TIMESTAMP];
  if (ts !== undefined && (typeof ts !== 'string' || !BASE64.test(ts)))
    throw new EnvelopeError(`${TIMESTAMP} is not base64`);
  return {
    format: 'jws',
    alg: attributes.alg,
    scheme,
    signingTime: attributes.signingTime,
    authenticSigningTime: attributes.authenticSigningTime,
    expiry: attributes.expiry,
    payload: Buffer.from(payloadText, 'base64url'),
    signedBytes: Buffer.from(`${protectedText}.${payloadText}`, 'ascii'),
    signature,
    certificates,
    timestamp: typeof ts === 'string' ? Buffer.from(ts, 'base64') : undefined,
  };
}

function readCose(bytes: Uint8Array): NotationEnvelope {
  let top: CborValue;
  try {
    top = decodeCbor(bytes);
  } catch (err) {
    throw new EnvelopeError(`the COSE envelope is not CBOR: ${(err as Error).message}`);
  }
  if (!isTagged(top) || top.tag !== 18)
    throw new EnvelopeError('the COSE envelope is not a tagged COSE_Sign1 (tag 18)');
  const parts = top.value;
  if (!Array.isArray(parts) || parts.length !== 4) throw new EnvelopeError('COSE_Sign1 must have 4 parts');
  const [protectedBytes, unprotected, payload, signature] = parts as CborValue[];
  if (!(protectedBytes instanceof Uint8Array))
    throw new EnvelopeError('the COSE protected header is not a byte string');
  if (!(payload instanceof Uint8Array))
    throw new EnvelopeError('the COSE payload is missing (detached payloads are not used)');
  if (!(signature instanceof Uint8Array)) throw new EnvelopeError('the COSE signature is not a byte string');
  let header: CborValue;
  try {
    header = decodeCbor(protectedBytes);
  } catch (err) {
    throw new EnvelopeError(`the COSE protected header is not CBOR: ${(err as CborError).message}`);
  }
  if (!(header instanceof Map)) throw new EnvelopeError('the COSE protected header is not a map');
  const h = header as ReadonlyMap<number | string, CborValue>;
  const alg = COSE_ALGS.get(h.get(1) as number);
  if (alg === undefined)
    throw new EnvelopeError(`COSE alg ${JSON.stringify(h.get(1))} is not one the specification allows`);
  const crit = h.get(2);
  if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === 'string'))
    throw new EnvelopeError('COSE crit (label 2) must be a non-empty list of names');
  const time = (name: string): Date | undefined => {
    const v = h.get(name);
    if (v === undefined) return undefined;
    if (!isTagged(v) || v.tag !== 1 || typeof v.value !== 'number')
      throw new EnvelopeError(`${name} must be an epoch time (tag 1, integer seconds)`);
    return new Date(v.value * 1000);
  };
  const attributes: Attributes = {
    alg,
    contentType: h.get(3),
    crit: crit as string[],
    present: new Set([...h.keys()].filter((k): k is string => typeof k === 'string')),
    scheme: h.get(SCHEME),
    signingTime: time(SIGNING_TIME),
    authenticSigningTime: time(AUTHENTIC_TIME),
    expiry: time(EXPIRY),
  };
  for (const k of h.keys()) {
    if (typeof k === 'number' && ![1, 2, 3].includes(k))
      throw new EnvelopeError(`COSE protected header label ${k} is not one the specification uses`);
  }
  const scheme = checkAttributes(attributes);
  if (!(unprotected instanceof Map)) throw new EnvelopeError('the COSE unprotected header is not a map');
  const u = unprotected as ReadonlyMap<number | string, CborValue>;
  for (const k of u.keys()) {
    if (k !== 33 && k !== TIMESTAMP && k !== AGENT)
      throw new EnvelopeError(`COSE unprotected header ${JSON.stringify(k)} is not one the specification uses`);
  }
  const chain = u.get(33);
  const list = chain instanceof Uint8Array ? [chain] : chain;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_CERTIFICATES)
    throw new EnvelopeError(`x5chain (label 33) must hold 1 to ${MAX_CERTIFICATES} certificates`);
  const certificates = list.map((c, i) => {
    if (!(c instanceof Uint8Array)) throw new EnvelopeError(`x5chain[${i}] is not a byte string`);
    return Buffer.from(c);
  });
  const ts = u.get(TIMESTAMP);
  if (ts !== undefined && !(ts instanceof Uint8Array)) throw new EnvelopeError(`${TIMESTAMP} is not a byte string`);
  const signedBytes = Buffer.concat([
    cborHead(4, 4),
    cborHead(3, 10),
    Buffer.from('Signature1'),
    cborHead(2, protectedBytes.length),
    protectedBytes,
    cborHead(2, 0),
    cborHead(2, payload.length),
    payload,
  ]);
  return {
    format: 'cose',
    alg,
    scheme,
    signingTime: attributes.signingTime,
    authenticSigningTime: attributes.authenticSigningTime,
    expiry: attributes.expiry,
    payload: Buffer.from(payload),
    signedBytes,
    signature: Buffer.from(signature),
    certificates,
    timestamp: ts instanceof Uint8Array ? Buffer.from(ts) : undefined,
  };
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new EnvelopeError(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function only(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  const extra = Object.keys(o).find((k) => !keys.includes(k));
  if (extra !== undefined) throw new EnvelopeError(`${what} has an unexpected member ${JSON.stringify(extra)}`);
}

function b64url(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || !BASE64URL.test(v))
    throw new EnvelopeError(`${what} is not unpadded base64url`);
  return v;
}
