import { createHash, verify, X509Certificate } from 'node:crypto';
import {
  children,
  ctx,
  ctxPrimitive,
  DerError,
  expect,
  generalizedTime,
  INTEGER,
  OCTET_STRING,
  oid,
  readOne,
  SEQUENCE,
  SET,
  smallInteger,
  type Der,
} from './der.js';

/**
 * An RFC 3161 TimeStampToken (a CMS SignedData over a TSTInfo) countersigning a
 * signature, verified as the Notary Project's timestamp rules ask: the token's
 * message imprint is the hash of the signature bytes, its one signer's signature
 * covers the signed attributes, which name the TSTInfo's digest and the signing
 * certificate, and that certificate is a time-stamping certificate whose chain
 * reaches a root of the `tsa` trust stores, each certificate valid at the time
 * the token states. What comes out is the interval the signature certainly existed
 * in: the token's time plus and minus its stated accuracy (one second when it states
 * none, the resolution of a GeneralizedTime without fractions).
 */
export class TimestampError extends Error {}

export interface VerifiedTimestamp {
  /** Earliest and latest instants the stated time may mean, accuracy applied. */
  readonly earliest: Date;
  readonly latest: Date;
  readonly genTime: Date;
  /** The timestamp authority's certificate subject, for messages. */
  readonly authority: string;
  /** The timestamp authority's chain, its certificate first, the tsa store's root last. */
  readonly chain: readonly X509Certificate[];
}

const MAX_TOKEN = 64 * 1024;
const MAX_CERTIFICATES = 16;
const MAX_CHAIN = 8;
const MAX_ACCURACY_MS = 86_400_000;
const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_TST_INFO = '1.2.840.113549.1.9.16.1.4';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const OID_SIGNING_CERTIFICATE = '1.2.840.113549.1.9.16.2.12';
const OID_SIGNING_CERTIFICATE_V2 = '1.2.840.113549.1.9.16.2.47';
const OID_TIME_STAMPING = '1.3.6.1.5.5.7.3.8';
const OID_EKU = '2.5.29.37';
const HASHES = new Map([
  ['2.16.840.1.101.3.4.2.1', 'sha256'],
  ['2.16.840.1.101.3.4.2.2', 'sha384'],
  ['2.16.840.1.101.3.4.2.3', 'sha512'],
]);
/** Signature algorithms: the key family they need and the hash they name (undefined: the digest algorithm's). */
const SIGNATURES = new Map<string, { family: 'rsa' | 'ec'; hash?: string }>([
  ['1.2.840.113549.1.1.1', { family: 'rsa' }],
  ['1.2.840.113549.1.1.11', { family: 'rsa', hash: 'sha256' }],
  ['1.2.840.113549.1.1.12', { family: 'rsa', hash: 'sha384' }],
  ['1.2.840.113549.1.1.13', { family: 'rsa', hash: 'sha512' }],
  ['1.2.840.10045.2.1', { family: 'ec' }],
  ['1.2.840.10045.4.3.2', { family: 'ec', hash: 'sha256' }],
  ['1.2.840.10045.4.3.3', { family: 'ec', hash: 'sha384' }],
  ['1.2.840.10045.4.3.4', { family: 'ec', hash: 'sha512' }],
]);

export function verifyTimestampToken(
  token: Buffer,
  signature: Buffer,
  roots: readonly X509Certificate[],
): VerifiedTimestamp {
  if (token.length > MAX_TOKEN) throw new TimestampError(`the timestamp token is over ${MAX_TOKEN} bytes`);
  if (roots.length === 0) throw new TimestampError('the tsa trust stores hold no certificate');
  try {
    return verifyToken(token, signature, roots);
  } catch (err) {
    if (err instanceof TimestampError) throw err;
    if (err instanceof DerError) throw new TimestampError(`the timestamp token is malformed: ${err.message}`);
    // Anything else the token's bytes provoke (a key OpenSSL cannot decode, say) refuses this
    // signature only, never the whole decision.
    throw new TimestampError(`the timestamp token cannot be verified: ${(err as Error).message}`);
  }
}

function verifyToken(token: Buffer, signature: Buffer, roots: readonly X509Certificate[]): VerifiedTimestamp {
  // ContentInfo { contentType, [0] EXPLICIT SignedData }
  const [contentType, wrapped] = children(expect(readOne(token), SEQUENCE, 'ContentInfo'), 2);
  if (oid(contentType, 'the content type') !== OID_SIGNED_DATA)
    throw new TimestampError('the timestamp token is not a CMS SignedData');
  const signedData = expect(children(expect(wrapped, ctx(0), 'the signed data'), 1)[0], SEQUENCE, 'SignedData');
  const sd = children(signedData, 8);
  // SignedData { version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos }
  const encap = children(expect(sd[2], SEQUENCE, 'encapContentInfo'), 2);
  const eContentType = oid(encap[0], 'the encapsulated content type');
  if (eContentType !== OID_TST_INFO)
    throw new TimestampError(`the timestamp token's content is ${eContentType}, not a TSTInfo`);
  const tstInfoBytes = expect(children(expect(encap[1], ctx(0), 'eContent'), 1)[0], OCTET_STRING, 'eContent').content;
  let rest = sd.slice(3);
  const certificates: X509Certificate[] = [];
  if (rest[0]?.tag === ctx(0)) {
    for (const c of children(rest[0], MAX_CERTIFICATES)) {
      if (c.tag !== SEQUENCE) continue; // other certificate formats (attribute certificates) are not used
      try {
        certificates.push(new X509Certificate(c.raw));
      } catch {
        throw new TimestampError('a certificate in the timestamp token does not parse');
      }
    }
    rest = rest.slice(1);
  }
  if (rest[0]?.tag === ctx(1)) rest = rest.slice(1);
  const signerInfos = children(expect(rest[0], SET, 'signerInfos'), 2);
  if (signerInfos.length !== 1 || rest.length !== 1)
    throw new TimestampError('the timestamp token must have exactly one signer');
  const si = children(expect(signerInfos[0], SEQUENCE, 'SignerInfo'), 7);

  // SignerInfo { version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, [1] unsignedAttrs? }
  const sid = si[1] as Der;
  const digestAlg = algorithm(si[2], 'the digest algorithm');
  const hash = HASHES.get(digestAlg);
  if (hash === undefined) throw new TimestampError(`the timestamp's digest algorithm ${digestAlg} is not SHA-2`);
  const signedAttrs = expect(si[3], ctx(0), 'the signed attributes');
  const sigAlgOid = algorithm(si[4], 'the signature algorithm');
  const sigAlg = SIGNATURES.get(sigAlgOid);
  if (sigAlg === undefined)
    throw new TimestampError(`the timestamp's signature algorithm ${sigAlgOid} is not one this gateway verifies`);
  const signatureValue = expect(si[5], OCTET_STRING, 'the signature value').content;

  const attrs = new Map<string, Der[]>();
  for (const a of children(signedAttrs, 32)) {
    const [type, values] = children(expect(a, SEQUENCE, 'a signed attribute'), 2);
    const name = oid(type, 'a signed attribute type');
    if (attrs.has(name)) throw new TimestampError(`the signed attribute ${name} appears twice`);
    attrs.set(name, children(expect(values, SET, `the values of ${name}`), 4));
  }
  const one = (name: string, what: string): Der => {
    const v = attrs.get(name);
    if (v?.length !== 1) throw new TimestampError(`the timestamp's signed attributes need one ${what}`);
    return v[0] as Der;
  };
  if (oid(one(OID_CONTENT_TYPE, 'content type'), 'the content-type attribute') !== OID_TST_INFO)
    throw new TimestampError('the signed content-type attribute is not TSTInfo');
  const messageDigest = expect(one(OID_MESSAGE_DIGEST, 'message digest'), OCTET_STRING, 'the message digest').content;
  if (!createHash(hash).update(tstInfoBytes).digest().equals(messageDigest))
    throw new TimestampError('the signed message digest is not the TSTInfo');

  const signer = certificates.find((c) => identifies(sid, c));
  if (signer === undefined) throw new TimestampError('the signing certificate is not in the timestamp token');
  signingCertificateBinding(attrs, signer);
  const family = signer.publicKey.asymmetricKeyType;
  if ((sigAlg.family === 'rsa' && family !== 'rsa') || (sigAlg.family === 'ec' && family !== 'ec'))
    throw new TimestampError(`the timestamp's signature algorithm does not fit its signer's ${family} key`);
  // The signature covers the signed attributes with their EXPLICIT SET OF tag (RFC 5652 §5.4).
  const toSign = Buffer.concat([Buffer.from([SET]), signedAttrs.raw.subarray(1)]);
  const ok = verify(
    sigAlg.hash ?? hash,
    toSign,
    sigAlg.family === 'ec' ? { key: signer.publicKey, dsaEncoding: 'der' } : signer.publicKey,
    signatureValue,
  );
  if (!ok) throw new TimestampError('the timestamp authority signature does not verify');

  const info = tstInfo(tstInfoBytes);
  const imprintHash = HASHES.get(info.imprintAlg);
  if (imprintHash === undefined) throw new TimestampError(`the message imprint's hash ${info.imprintAlg} is not SHA-2`);
  if (!createHash(imprintHash).update(signature).digest().equals(info.imprint))
    throw new TimestampError('the timestamp is for other bytes than this signature');

  const chain = chainToRoot(signer, certificates, roots, info.genTime);
  return {
    earliest: new Date(info.genTime.getTime() - info.accuracyMs),
    latest: new Date(info.genTime.getTime() + info.accuracyMs + (info.subMillisecond ? 1 : 0)),
    genTime: info.genTime,
    authority: nameOf(signer),
    chain,
  };
}

function algorithm(d: Der | undefined, what: string): string {
  return oid(children(expect(d, SEQUENCE, what), 2)[0], what);
}

/** Whether a SignerIdentifier (issuerAndSerialNumber, or [0] subjectKeyIdentifier) names `c`. */
function identifies(sid: Der, c: X509Certificate): boolean {
  const tbsDer = children(readOne(c.raw), 3)[0] as Der;
  const tbs = children(tbsDer, 12);
  const hasVersion = tbs[0]?.tag === ctx(0);
  const serial = tbs[hasVersion ? 1 : 0] as Der;
  const issuer = tbs[hasVersion ? 3 : 2] as Der;
  if (sid.tag === SEQUENCE) {
    const [name, number] = children(sid, 2);
    return name !== undefined && number !== undefined && name.raw.equals(issuer.raw) && number.raw.equals(serial.raw);
  }
  if (sid.tag === ctxPrimitive(0)) {
    const ski = subjectKeyIdentifier(tbsDer);
    return ski !== undefined && ski.equals(sid.content);
  }
  throw new DerError('the signer identifier is neither issuer and serial nor a key identifier');
}

function subjectKeyIdentifier(tbs: Der): Buffer | undefined {
  const ski = extensionsOf(tbs).get('2.5.29.14');
  return ski === undefined ? undefined : expect(readOne(ski.value), OCTET_STRING, 'the key identifier').content;
}

/**
 * ESS signing-certificate attributes (RFC 2634, RFC 5035) bind the signer's certificate
 * into what is signed, so another certificate of the same key cannot be substituted;
 * RFC 3161 requires one. Its first ESSCertID must hash to the signing certificate.
 */
function signingCertificateBinding(attrs: ReadonlyMap<string, Der[]>, signer: X509Certificate): void {
  const v2 = attrs.get(OID_SIGNING_CERTIFICATE_V2);
  const v1 = attrs.get(OID_SIGNING_CERTIFICATE);
  const attr = (v2 ?? v1)?.[0];
  if (attr === undefined)
    throw new TimestampError('the timestamp names no signing certificate (ESS signing-certificate attribute)');
  const certs = children(expect(children(expect(attr, SEQUENCE, 'SigningCertificate'), 2)[0], SEQUENCE, 'certs'), 16);
  const id = children(expect(certs[0], SEQUENCE, 'ESSCertID'), 3);
  let hashName = 'sha1';
  let hashValue = id[0];
  if (v2 !== undefined) {
    hashName = 'sha256';
    if (id[0]?.tag === SEQUENCE) {
      const alg = algorithm(id[0], 'the ESSCertIDv2 hash algorithm');
      const h = HASHES.get(alg);
      if (h === undefined) throw new TimestampError(`the ESSCertIDv2 hash ${alg} is not SHA-2`);
      hashName = h;
      hashValue = id[1];
    }
  }
  const expected = expect(hashValue, OCTET_STRING, 'the certificate hash').content;
  if (!createHash(hashName).update(signer.raw).digest().equals(expected))
    throw new TimestampError('the signed signing-certificate attribute names another certificate');
}

interface TstInfo {
  readonly imprintAlg: string;
  readonly imprint: Buffer;
  readonly genTime: Date;
  /** genTime had digits below the millisecond (cut off, so the latest instant moves up by one). */
  readonly subMillisecond: boolean;
  readonly accuracyMs: number;
}

/** millis and micros of an Accuracy: 1 to 999 (RFC 3161 §2.4.2). */
function subSecond(d: Der, what: string): number {
  const v = smallInteger(d, what, d.tag);
  if (v < 1 || v > 999) throw new DerError(`${what} ${v} is not 1 to 999`);
  return v;
}

/** TSTInfo { version 1, policy, messageImprint, serialNumber, genTime, accuracy?, ordering?, nonce?, tsa?, extensions? } */
function tstInfo(bytes: Buffer): TstInfo {
  const t = children(expect(readOne(bytes), SEQUENCE, 'TSTInfo'), 10);
  if (smallInteger(t[0], 'the TSTInfo version') !== 1) throw new TimestampError('the TSTInfo version is not 1');
  oid(t[1], 'the TSA policy');
  const [imprintAlg, imprint] = children(expect(t[2], SEQUENCE, 'the message imprint'), 2);
  expect(t[3], INTEGER, 'the serial number');
  const genTime = generalizedTime(t[4], 'genTime');
  let accuracyMs = 1000;
  if (t[5]?.tag === SEQUENCE) {
    accuracyMs = 0;
    for (const a of children(t[5], 3)) {
      if (a.tag === INTEGER) accuracyMs += smallInteger(a, 'accuracy seconds') * 1000;
      else if (a.tag === ctxPrimitive(0)) accuracyMs += subSecond(a, 'accuracy millis');
      else if (a.tag === ctxPrimitive(1)) accuracyMs += subSecond(a, 'accuracy micros') / 1000;
      else throw new DerError('the accuracy has an unknown field');
    }
    // A timestamp vouching for a window wider than a day vouches for nothing a policy can use.
    if (accuracyMs > MAX_ACCURACY_MS)
      throw new TimestampError(`the timestamp's accuracy of ${accuracyMs} ms is over a day`);
  }
  return {
    imprintAlg: algorithm(imprintAlg, 'the message imprint algorithm'),
    imprint: expect(imprint, OCTET_STRING, 'the hashed message').content,
    genTime: genTime.at,
    subMillisecond: genTime.subMillisecond,
    accuracyMs: Math.ceil(accuracyMs),
  };
}

/**
 * The signer's chain to a certificate of the tsa stores, through the token's own
 * certificates, held to the rules a TLS or code-signing chain is held to (as Go's
 * x509.Verify and notation-core-go hold a timestamping chain): each certificate signed
 * by the next and valid at the stated time, no SHA-1 signature, no RSA key under 2048
 * bits, no critical extension this verifier does not understand; every issuer a CA
 * (critical basicConstraints) for keyCertSign, within its path length, and, when it
 * restricts extended key usages, allowing time stamping; the signer not a CA, for
 * digitalSignature, with timeStamping as its only extended key usage, marked critical
 * (RFC 3161 §2.3). Returns the chain, signer first, root last.
 */
function chainToRoot(
  signer: X509Certificate,
  pool: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  at: Date,
): X509Certificate[] {
  const path = [signer];
  for (;;) {
    const current = path[path.length - 1] as X509Certificate;
    if (roots.some((r) => r.raw.equals(current.raw))) break;
    if (path.length === MAX_CHAIN)
      throw new TimestampError(`the timestamp authority chain is longer than ${MAX_CHAIN}`);
    const issuer =
      roots.find((r) => issued(current, r)) ??
      pool.find((c) => !path.some((p) => p.raw.equals(c.raw)) && issued(current, c));
    if (issuer === undefined)
      throw new TimestampError(
        `the timestamp authority certificate ${nameOf(signer)} does not chain to a certificate of the tsa trust stores`,
      );
    path.push(issuer);
  }
  path.forEach((c, i) => certificateRules(c, i, at));
  return path;
}

const nameOf = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');
const OID_KEY_USAGE = '2.5.29.15';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_ANY_EKU = '2.5.29.37.0';
/** Extensions whose meaning this verifier applies or which constrain nothing it relies on. */
const UNDERSTOOD = new Set([
  OID_KEY_USAGE,
  OID_BASIC_CONSTRAINTS,
  OID_EKU,
  '2.5.29.17',
  '2.5.29.32',
  '2.5.29.14',
  '2.5.29.35',
]);
const SHA1_SIGNED = new Set(['1.2.840.113549.1.1.5', '1.2.840.10045.4.1', '1.2.840.10040.4.3']);

function certificateRules(c: X509Certificate, index: number, at: Date): void {
  const name = `timestamp authority certificate ${nameOf(c)}`;
  if (Date.parse(c.validFrom) > at.getTime() || at.getTime() > Date.parse(c.validTo))
    throw new TimestampError(`${name} is not valid at the stated time ${at.toISOString()}`);
  const outer = children(readOne(c.raw), 3);
  if (SHA1_SIGNED.has(algorithm(outer[1], 'the certificate signature algorithm')))
    throw new TimestampError(`${name} is signed with SHA-1`);
  const key = c.publicKey;
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new TimestampError(`${name} has an RSA key shorter than 2048 bits`);
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'ec')
    throw new TimestampError(`${name} has a ${key.asymmetricKeyType ?? 'unknown'} key`);
  const exts = extensionsOf(outer[0] as Der);
  for (const [oidText, e] of exts)
    if (e.critical && !UNDERSTOOD.has(oidText))
      throw new TimestampError(`${name} has a critical extension ${oidText} this verifier does not apply`);
  const usage = exts.get(OID_KEY_USAGE);
  const bits = usage ? expect(readOne(usage.value), 0x03, 'keyUsage').content : undefined;
  const bit = (n: number) => bits !== undefined && ((bits[1 + (n >> 3)] ?? 0) & (0x80 >> (n & 7))) !== 0;
  const basic = exts.get(OID_BASIC_CONSTRAINTS);
  const bc = basic ? children(expect(readOne(basic.value), SEQUENCE, 'basicConstraints'), 2) : [];
  const isCA = bc[0]?.tag === 0x01 && bc[0].content[0] === 0xff;
  const ekus = exts.get(OID_EKU);
  const purposes = ekus
    ? children(expect(readOne(ekus.value), SEQUENCE, 'the extended key usage'), 16).map((u) => oid(u, 'a key purpose'))
    : undefined;
  if (index === 0) {
    if (isCA) throw new TimestampError(`${name} is a CA certificate, not a timestamping certificate`);
    if (!bit(0)) throw new TimestampError(`${name} is not for digitalSignature`);
    if (purposes?.length !== 1 || purposes[0] !== OID_TIME_STAMPING || !ekus?.critical)
      throw new TimestampError(`${name} must have timeStamping as its only extended key usage, marked critical`);
    return;
  }
  if (!isCA || !basic?.critical) throw new TimestampError(`${name} issues but lacks critical basicConstraints cA true`);
  if (!bit(5)) throw new TimestampError(`${name} issues but is not for keyCertSign`);
  const pathLen = bc[1]?.tag === INTEGER ? smallInteger(bc[1], 'pathLenConstraint') : undefined;
  if (pathLen !== undefined && index - 1 > pathLen)
    throw new TimestampError(`${name} allows ${pathLen} CAs below it, the chain has ${index - 1}`);
  if (purposes !== undefined && !purposes.includes(OID_TIME_STAMPING) && !purposes.includes(OID_ANY_EKU))
    throw new TimestampError(`${name} restricts extended key usages to ones without timeStamping`);
}

function issued(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

/** A certificate's extensions by OID: whether critical, and the extnValue contents. */
function extensionsOf(tbsDer: Der): Map<string, { critical: boolean; value: Buffer }> {
  const tbs = children(tbsDer, 12);
  const exts = tbs.find((d) => d.tag === ctx(3));
  const out = new Map<string, { critical: boolean; value: Buffer }>();
  if (exts === undefined) return out;
  for (const e of children(expect(children(exts, 1)[0], SEQUENCE, 'extensions'), 64)) {
    const parts = children(expect(e, SEQUENCE, 'an extension'), 3);
    const id = oid(parts[0], 'an extension');
    if (out.has(id)) throw new DerError(`extension ${id} appears twice`);
    const critical = parts.length === 3 && parts[1]?.tag === 0x01 && parts[1].content[0] === 0xff;
    out.set(id, { critical, value: expect(parts.at(-1), OCTET_STRING, `extension ${id}`).content });
  }
  return out;
}
