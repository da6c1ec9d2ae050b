import { createHash, sign } from 'node:crypto';
import forge from 'node-forge';
import type { TestCert } from './notation-signer.js';

/**
 * A timestamp authority of the tests: RFC 3161 TimeStampTokens (CMS SignedData over a
 * TSTInfo, signed attributes with content type, message digest and an ESS
 * signing-certificate-v2, RSA PKCS #1 v1.5 with SHA-256) written here byte by byte, so
 * a test can state any time, accuracy or certificate, and spoil one part at a time.
 * Real tokens (GlobalSign's, in notation-go's vectors) check the same verifier.
 */
export interface TokenOptions {
  /** The time the token states (default now). */
  readonly at?: Date;
  /** Accuracy in milliseconds; null leaves the field out (default 1000). */
  readonly accuracyMs?: number | null;
  /** Certificates the token carries besides the signer (intermediates). */
  readonly extra?: readonly TestCert[];
  /** Leave the signer's certificate out. */
  readonly withoutSigner?: boolean;
  /** Leave out the ESS signing-certificate attribute, or make it name another certificate. */
  readonly ess?: 'none' | 'other';
  /** Hash the message imprint is made with (default sha256). */
  readonly imprintHash?: 'sha256' | 'sha1';
  /** The genTime text as written, instead of `at` (a malformed time). */
  readonly genTimeText?: string;
  /** Flip a byte of the signature value. */
  readonly badSignature?: boolean;
}

const OIDS = {
  signedData: '1.2.840.113549.1.7.2',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha1: '1.3.14.3.2.26',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  policy: '1.3.6.1.4.1.99999.1',
};

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...parts: Buffer[]): Buffer => {
  const content = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
};
const seq = (...parts: Buffer[]) => tlv(0x30, ...parts);
const set = (...parts: Buffer[]) => tlv(0x31, ...parts);
const octets = (b: Buffer) => tlv(0x04, b);
const integer = (n: number) => {
  const bytes: number[] = [];
  for (let v = n; v > 0 || bytes.length === 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
};
function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [];
  for (const arc of [(arcs[0] as number) * 40 + (arcs[1] as number), ...arcs.slice(2)]) {
    const b: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) b.unshift(0x80 | (v & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}
const algorithm = (o: string) => seq(oid(o), Buffer.from([0x05, 0x00]));
function generalizedTime(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-12-04T13:22:03.591Z
  const ms = iso.slice(20, 23).replace(/0+$/, '');
  const text = `${iso.slice(0, 19).replace(/[-:T]/g, '')}${ms ? `.${ms}` : ''}Z`;
  return tlv(0x18, Buffer.from(text, 'latin1'));
}

/** Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999) OPTIONAL } */
function accuracyField(ms: number): Buffer {
  const seconds = Math.floor(ms / 1000);
  const millis = ms % 1000;
  return seq(
    ...(seconds > 0 ? [integer(seconds)] : []),
    ...(millis > 0 ? [tlv(0x80, integer(millis).subarray(2))] : []),
  );
}

let serial = 1;

/** A TimeStampToken from `tsa` (a certificate with the timeStamping usage) over `signature`. */
export function timestampToken(tsa: TestCert, signature: Buffer, o: TokenOptions = {}): Buffer {
  const imprintHash = o.imprintHash ?? 'sha256';
  const accuracy = o.accuracyMs === undefined ? 1000 : o.accuracyMs;
  const info = seq(
    integer(1),
    oid(OIDS.policy),
    seq(algorithm(OIDS[imprintHash]), octets(createHash(imprintHash).update(signature).digest())),
    integer(serial++),
    o.genTimeText !== undefined ? tlv(0x18, Buffer.from(o.genTimeText, 'latin1')) : generalizedTime(o.at ?? new Date()),
    ...(accuracy === null ? [] : [accuracyField(accuracy)]),
  );
  const certHash = createHash('sha256')
    .update(o.ess === 'other' ? Buffer.concat([tsa.der, Buffer.from([0])]) : tsa.der)
    .digest();
  const attributes = [
    seq(oid(OIDS.contentType), set(oid(OIDS.tstInfo))),
    seq(oid(OIDS.messageDigest), set(octets(createHash('sha256').update(info).digest()))),
    ...(o.ess === 'none' ? [] : [seq(oid(OIDS.signingCertificateV2), set(seq(seq(seq(octets(certHash))))))]),
  ];
  const signedAttrs = set(...attributes);
  const value = sign('sha256', signedAttrs, tsa.key);
  if (o.badSignature) value[10] = (value[10] as number) ^ 1;
  const tbs = (forge.pki.certificateToAsn1(tsa.forgeCert) as forge.asn1.Asn1).value[0] as forge.asn1.Asn1;
  const fields = tbs.value as forge.asn1.Asn1[];
  const der = (a: forge.asn1.Asn1) => Buffer.from(forge.asn1.toDer(a).getBytes(), 'binary');
  const signerInfo = seq(
    integer(1),
    seq(der(fields[3] as forge.asn1.Asn1), der(fields[1] as forge.asn1.Asn1)),
    algorithm(OIDS.sha256),
    Buffer.concat([Buffer.from([0xa0]), signedAttrs.subarray(1)]),
    algorithm(OIDS.sha256WithRSA),
    octets(value),
  );
  const certs = [...(o.withoutSigner ? [] : [tsa]), ...(o.extra ?? [])].map((c) => c.der);
  const signedData = seq(
    integer(3),
    set(algorithm(OIDS.sha256)),
    seq(oid(OIDS.tstInfo), tlv(0xa0, octets(info))),
    ...(certs.length > 0 ? [tlv(0xa0, ...certs)] : []),
    set(signerInfo),
  );
  return seq(oid(OIDS.signedData), tlv(0xa0, signedData));
}
