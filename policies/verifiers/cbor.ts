/**
 * A small, strict CBOR (RFC 8949) decoder for signature envelopes (COSE_Sign1): definite
 * lengths only, integers within 2^53, no floats, no duplicate map keys, no bytes after
 * the item, and depth and item counts bounded. Anything else is an error, not a guess.
 */
export type CborValue =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | readonly CborValue[]
  | ReadonlyMap<number | string, CborValue>
  | CborTagged;

export interface CborTagged {
  readonly tag: number;
  readonly value: CborValue;
}

export class CborError extends Error {}

const MAX_DEPTH = 16;
const MAX_ITEMS = 4096;

export function decodeCbor(bytes: Uint8Array): CborValue {
  let pos = 0;
  let items = 0;
  const need = (n: number): void => {
    if (n > bytes.length - pos) throw new CborError(`truncated at byte ${pos}`);
  };
  const head = (): { major: number; arg: number } => {
    need(1);
    const first = bytes[pos++] as number;
    const major = first >> 5;
    const info = first & 31;
    if (info < 24) return { major, arg: info };
    if (info > 27) throw new CborError(`indefinite length or reserved value at byte ${pos - 1}`);
    const size = 1 << (info - 24);
    need(size);
    let arg = 0;
    for (let i = 0; i < size; i++) arg = arg * 256 + (bytes[pos++] as number);
    if (!Number.isSafeInteger(arg)) throw new CborError(`integer too large at byte ${pos - size - 1}`);
    return { major, arg };
  };
  const item = (depth: number): CborValue => {
    if (depth > MAX_DEPTH) throw new CborError('nested too deeply');
    if (++items > MAX_ITEMS) throw new CborError('too many items');
    const at = pos;
    const { major, arg } = head();
    switch (major) {
      case 0:
        return arg;
      case 1:
        return -1 - arg;
      case 2:
      case 3: {
        need(arg);
        const chunk = bytes.subarray(pos, pos + arg);
        pos += arg;
        if (major === 2) return chunk;
        const text = new TextDecoder('utf-8', { fatal: true });
        try {
          return text.decode(chunk);
        } catch {
          throw new CborError(`text string at byte ${at} is not UTF-8`);
        }
      }
      case 4: {
        if (arg > bytes.length - pos) throw new CborError(`array at byte ${at} is longer than the input`);
        const out: CborValue[] = [];
        for (let i = 0; i < arg; i++) out.push(item(depth + 1));
        return out;
      }
      case 5: {
        if (arg > bytes.length - pos) throw new CborError(`map at byte ${at} is longer than the input`);
        const out = new Map<number | string, CborValue>();
        for (let i = 0; i < arg; i++) {
          const key = item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'string')
            throw new CborError(`map at byte ${at} has a key that is not an integer or text`);
          if (out.has(key)) throw new CborError(`map at byte ${at} repeats the key ${JSON.stringify(key)}`);
          out.set(key, item(depth + 1));
        }
        return out;
      }
      case 6:
        return { tag: arg, value: item(depth + 1) };
      default:
        if (arg === 20) return false;
        if (arg === 21) return true;
        if (arg === 22) return null;
        throw new CborError(`unsupported simple value or float at byte ${at}`);
    }
  };
  const value = item(0);
  if (pos !== bytes.length) throw new CborError(`${bytes.length - pos} bytes after the CBOR item`);
  return value;
}

/** The CBOR head of a byte string (major 2) or text string (major 3) of `length` bytes. */
export function cborHead(major: 2 | 3 | 4, length: number): Buffer {
  const m = major << 5;
  if (length < 24) return Buffer.from([m | length]);
  if (length < 0x100) return Buffer.from([m | 24, length]);
  if (length < 0x10000) return Buffer.from([m | 25, length >> 8, length & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = m | 26;
  b.writeUInt32BE(length, 1);
  return b;
}

export function isTagged(v: CborValue | undefined): v is CborTagged {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v) && !(v instanceof Map);
}
