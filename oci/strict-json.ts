import { OciError } from './errors.js';

/**
 * Parses untrusted JSON and rejects what JSON.parse silently accepts: duplicate object
 * keys (two parsers could each pick a different value: the classic signature-payload
 * confusion) and nesting beyond `maxDepth`. It validates the text in one pass, then
 * lets JSON.parse build the value, so values are identical to JSON.parse's.
 */
export interface StrictJsonOptions {
  maxDepth?: number;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

export function parseStrictJson(input: string | Uint8Array, options: StrictJsonOptions = {}): unknown {
  const text = typeof input === 'string' ? input : decodeUtf8(input);
  new Scanner(text, options.maxDepth ?? 64).document();
  return JSON.parse(text);
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (cause) {
    throw new OciError('JSON_INVALID', 'JSON is not valid UTF-8', { cause });
  }
}

class Scanner {
  #pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  document(): void {
    this.#ws();
    this.#value(0);
    this.#ws();
    if (this.#pos !== this.text.length) this.#fail('unexpected data after the JSON value');
  }

  #fail(what: string): never {
    throw new OciError('JSON_INVALID', `invalid JSON at offset ${this.#pos}: ${what}`, {
      detail: { offset: this.#pos },
    });
  }

  #ws(): void {
    while (this.#pos < this.text.length && WS.has(this.text.charCodeAt(this.#pos))) this.#pos++;
  }

  #value(depth: number): void {
    const c = this.text[this.#pos];
    if (c === '{') return this.#object(depth + 1);
    if (c === '[') return this.#array(depth + 1);
    if (c === '"') {
      this.#string();
      return;
    }
    if (c === 't') return this.#literal('true');
    if (c === 'f') return this.#literal('false');
    if (c === 'n') return this.#literal('null');
    return this.#number();
  }

  #enter(depth: number): void {
    if (depth > this.maxDepth) {
      throw new OciError('JSON_TOO_DEEP', `JSON nests deeper than ${this.maxDepth} levels at offset ${this.#pos}`);
    }
  }

  #object(depth: number): void {
    this.#enter(depth);
    this.#pos++;
    const keys = new Set<string>();
    this.#ws();
    if (this.text[this.#pos] === '}') {
      this.#pos++;
      return;
    }
    for (;;) {
      this.#ws();
      if (this.text[this.#pos] !== '"') this.#fail('expected a string key');
      const start = this.#pos;
      this.#string();
      const key = JSON.parse(this.text.slice(start, this.#pos)) as string;
      if (keys.has(key)) {
        throw new OciError('JSON_DUPLICATE_KEY', `duplicate key ${JSON.stringify(key)} at offset ${start}`, {
          detail: { key, offset: start },
        });
      }
      keys.add(key);
      this.#ws();
      if (this.text[this.#pos] !== ':') this.#fail('expected ":"');
      this.#pos++;
      this.#ws();
      this.#value(depth);
      this.#ws();
      const c = this.text[this.#pos];
      this.#pos++;
      if (c === '}') return;
      if (c !== ',') this.#fail('expected "," or "}"');
    }
  }

  #array(depth: number): void {
    this.#enter(depth);
    this.#pos++;
    this.#ws();
    if (this.text[this.#pos] === ']') {
      this.#pos++;
      return;
    }
    for (;;) {
      this.#ws();
      this.#value(depth);
      this.#ws();
      const c = this.text[this.#pos];
      this.#pos++;
      if (c === ']') return;
      if (c !== ',') this.#fail('expected "," or "]"');
    }
  }

  #string(): void {
    this.#pos++;
    for (;;) {
      if (this.#pos >= this.text.length) this.#fail('unterminated string');
      const code = this.text.charCodeAt(this.#pos);
      if (code === 0x22) {
        this.#pos++;
        return;
      }
      if (code < 0x20) this.#fail('control character in string');
      if (code === 0x5c) {
        const e = this.text[this.#pos + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(this.text.slice(this.#pos + 2, this.#pos + 6))) this.#fail('bad \\u escape');
          this.#pos += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) this.#fail('bad escape');
        this.#pos += 2;
        continue;
      }
      this.#pos++;
    }
  }

  #literal(word: string): void {
    if (this.text.startsWith(word, this.#pos)) {
      this.#pos += word.length;
      return;
    }
    this.#fail('unexpected token');
  }

  #number(): void {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.text.slice(this.#pos, this.#pos + 400));
    if (!m || m[0].length === 0) this.#fail('unexpected token');
    this.#pos += m[0].length;
  }
}

/** Narrowing helpers for parsed untrusted JSON. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
