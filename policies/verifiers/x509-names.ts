import type { X509Certificate as Asn1Certificate, ASN1Obj } from '@sigstore/core';
import { ASN1Obj as Asn1 } from '@sigstore/core';

/**
 * X.509 distinguished names as the Notary Project's trusted identities compare them:
 * a set of attribute type → value, each type at most once. Types are named as RFC
 * 4514 and Go's pkix name them (C, ST, L, O, OU, CN, SERIALNUMBER, STREET, POSTALCODE);
 * others by their dotted OID. `S` is ST.
 */
export interface DistinguishedName {
  readonly text: string;
  readonly attributes: ReadonlyMap<string, string>;
}

const NAMES: ReadonlyMap<string, string> = new Map([
  ['2.5.4.6', 'C'],
  ['2.5.4.8', 'ST'],
  ['2.5.4.7', 'L'],
  ['2.5.4.10', 'O'],
  ['2.5.4.11', 'OU'],
  ['2.5.4.3', 'CN'],
  ['2.5.4.5', 'SERIALNUMBER'],
  ['2.5.4.9', 'STREET'],
  ['2.5.4.17', 'POSTALCODE'],
]);
const KNOWN_TYPES = new Set(NAMES.values());
const MAX_ATTRIBUTES = 32;

/** The signing certificate's subject, or why it cannot be compared (a repeated attribute type, an odd string type). */
export function certificateSubject(cert: Asn1Certificate): DistinguishedName | string {
  let name: ASN1Obj;
  try {
    // @sigstore/core gives the Name's contents: put its SEQUENCE header back.
    const body = cert.subject;
    const len =
      body.length < 0x80
        ? Buffer.from([body.length])
        : body.length < 0x100
          ? Buffer.from([0x81, body.length])
          : Buffer.from([0x82, body.length >> 8, body.length & 0xff]);
    name = Asn1.parseBuffer(Buffer.concat([Buffer.from([0x30]), len, body]));
  } catch {
    return 'the subject does not parse';
  }
  const attributes = new Map<string, string>();
  const parts: string[] = [];
  for (const rdn of name.subs) {
    for (const atv of rdn.subs) {
      const [typeObj, valueObj] = atv.subs;
      if (!typeObj || !valueObj) return 'the subject has a malformed attribute';
      const oid = typeObj.toOID();
      const type = NAMES.get(oid) ?? oid;
      const value = stringValue(valueObj);
      if (value === undefined) return `the subject attribute ${type} is not a string`;
      if (attributes.has(type)) return `the subject repeats ${type}`;
      if (attributes.size >= MAX_ATTRIBUTES) return 'the subject has too many attributes';
      attributes.set(type, value);
      parts.push(`${type}=${value}`);
    }
  }
  return { text: parts.join(', '), attributes };
}

function stringValue(v: ASN1Obj): string | undefined {
  const tag = v.tag.number;
  if (v.tag.constructed) return undefined;
  if (tag === 12) return new TextDecoder('utf-8', { fatal: false }).decode(v.value);
  if (tag === 19 || tag === 22 || tag === 20) return v.value.toString('latin1');
  if (tag === 30) return v.value.length % 2 === 0 ? Buffer.from(v.value).swap16().toString('utf16le') : undefined;
  return undefined;
}

/**
 * A DN as written in a trust policy (`C=US, ST=WA, O=acme`): RDNs separated by `,`,
 * `;` or `+`; `\` escapes a special character or starts two hex digits. Returns the
 * attributes, or what is wrong.
 */
export function parseDistinguishedName(text: string): Map<string, string> | string {
  const out = new Map<string, string>();
  let i = 0;
  while (i < text.length) {
    while (text[i] === ' ') i++;
    const eq = text.indexOf('=', i);
    if (eq < 0) return `"${text.slice(i)}" has no "="`;
    let type = text.slice(i, eq).trim().toUpperCase();
    if (type === 'S') type = 'ST';
    if (!KNOWN_TYPES.has(type) && !/^\d+(\.\d+)+$/.test(type)) return `unknown attribute type "${type}"`;
    i = eq + 1;
    let value = '';
    let trailing = 0;
    while (i < text.length && ![',', ';', '+'].includes(text[i] as string)) {
      const c = text[i] as string;
      if (c === '\\') {
        const next = text.slice(i + 1, i + 3);
        if (/^[0-9A-Fa-f]{2}$/.test(next)) {
          value += String.fromCharCode(parseInt(next, 16));
          i += 3;
        } else if (i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
        } else return 'the name ends with a lone "\\"';
        trailing = 0;
        continue;
      }
      if (value === '' && c === ' ') {
        i++;
        continue;
      }
      value += c;
      trailing = c === ' ' ? trailing + 1 : 0;
      i++;
    }
    value = value.slice(0, value.length - trailing);
    if (value === '') return `attribute ${type} has no value`;
    if (out.has(type)) return `attribute ${type} appears twice`;
    out.set(type, value);
    if (i < text.length) i++;
  }
  return out;
}
