/**
 * A minimal DER reader for the structures the verifiers walk by hand (CMS SignedData,
 * TSTInfo, a certificate's issuer and serial). It reads one element at a time, at the
 * caller's direction, so nothing is parsed that is not looked at and nesting costs
 * nothing; definite lengths only, at most four length bytes, nothing past the end.
 */
export class DerError extends Error {}

export interface Der {
  /** The identifier octet: class, constructed bit and tag number (low tags only). */
  readonly tag: number;
  /** The whole element, header included (a view into the input). */
  readonly raw: Buffer;
  /** The contents (a view into the input). */
  readonly content: Buffer;
}

export const SEQUENCE = 0x30;
export const SET = 0x31;
export const INTEGER = 0x02;
export const OCTET_STRING = 0x04;
export const OID = 0x06;
export const BOOLEAN = 0x01;
export const GENERALIZED_TIME = 0x18;
/** `[n]` context-specific, constructed (EXPLICIT, or IMPLICIT of a constructed type). */
export const ctx = (n: number): number => 0xa0 | n;
/** `[n]` context-specific, primitive (IMPLICIT of a primitive type). */
export const ctxPrimitive = (n: number): number => 0x80 | n;

/** The element starting at `offset` of `buf`. */
export function readDer(buf: Buffer, offset = 0): Der {
  if (offset + 2 > buf.length) throw new DerError('truncated element');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[offset + 1] as number;
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('indefinite or oversized length');
    if (offset + 2 + n > buf.length) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[offset + 2 + i] as number);
    if (len < 0x80 || (buf[offset + 2] as number) === 0) throw new DerError('length not in its shortest form');
    head += n;
  }
  const end = offset + head + len;
  if (end > buf.length) throw new DerError('element runs past its container');
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + head, end) };
}

/** One element that is the whole of `buf`. */
export function readOne(buf: Buffer): Der {
  const d = readDer(buf);
  if (d.raw.length !== buf.length) throw new DerError('bytes after the element');
  return d;
}

/** The elements inside a constructed element, bounded in number. */
export function children(d: Der, max = 64): Der[] {
  if ((d.tag & 0x20) === 0) throw new DerError(`tag 0x${d.tag.toString(16)} is not constructed`);
  const out: Der[] = [];
  for (let at = 0; at < d.content.length;) {
    if (out.length === max) throw new DerError(`more than ${max} elements`);
    const c = readDer(d.content, at);
    out.push(c);
    at += c.raw.length;
  }
  return out;
}

/** `d`, checked to have `tag`. */
export function expect(d: Der | undefined, tag: number, what: string): Der {
  if (d === undefined) throw new DerError(`${what} is missing`);
  if (d.tag !== tag) throw new DerError(`${what} has tag 0x${d.tag.toString(16)}, not 0x${tag.toString(16)}`);
  return d;
}

/** An OBJECT IDENTIFIER in dotted form. */
export function oid(d: Der | undefined, what: string): string {
  const c = expect(d, OID, what).content;
  if (c.length === 0 || c.length > 64) throw new DerError(`${what} is not an object identifier`);
  const arcs: number[] = [];
  let v = 0;
  for (const [i, b] of c.entries()) {
    if (v === 0 && b === 0x80) throw new DerError(`${what} is not in its shortest form`);
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DerError(`${what} has an oversized arc`);
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    } else if (i === c.length - 1) throw new DerError(`${what} ends inside an arc`);
  }
  return arcs.join('.');
}

/** A small non-negative INTEGER (a version, milliseconds of accuracy). */
export function smallInteger(d: Der | undefined, what: string, tag = INTEGER): number {
  const c = expect(d, tag, what).content;
  if (c.length === 0 || c.length > 6 || ((c[0] as number) & 0x80) !== 0)
    throw new DerError(`${what} is not a small non-negative integer`);
  return c.readUIntBE(0, c.length);
}

/**
 * GeneralizedTime as RFC 5280 and RFC 3161 write it: `YYYYMMDDHHMMSS[.f]Z`, a real
 * calendar instant; fractions below the millisecond are cut off and said so.
 */
export function generalizedTime(d: Der | undefined, what: string): { at: Date; subMillisecond: boolean } {
  const text = expect(d, GENERALIZED_TIME, what).content.toString('latin1');
  const m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d*[1-9]))?Z$/.exec(text);
  if (!m) throw new DerError(`${what} ${JSON.stringify(text)} is not a GeneralizedTime in UTC`);
  const [y, mo, da, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const frac = m[7] ?? '';
  const at = new Date(0);
  at.setUTCFullYear(y, mo - 1, da);
  at.setUTCHours(h, mi, s, Number(frac.slice(0, 3).padEnd(3, '0')));
  if (
    mo < 1 ||
    mo > 12 ||
    at.getUTCFullYear() !== y ||
    at.getUTCMonth() !== mo - 1 ||
    at.getUTCDate() !== da ||
    h > 23 ||
    mi > 59 ||
    s > 59
  )
    throw new DerError(`${what} ${JSON.stringify(text)} is not a calendar time`);
  return { at, subMillisecond: frac.length > 3 };
}
