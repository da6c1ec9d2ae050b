import type { Readable } from 'node:stream';
import { UpstreamError } from '../errors.js';

/** Ends a body we will not read, without leaving an unhandled 'error' behind. */
export function dispose(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads at most `max` bytes of a body; more is an error and the stream is destroyed. */
export async function readBounded(body: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > max) {
        throw new UpstreamError('UPSTREAM_BODY_TOO_LARGE', `${what} is larger than ${max} bytes`);
      }
      chunks.push(buf);
    }
  } catch (err) {
    dispose(body);
    throw err;
  }
  return Buffer.concat(chunks, total);
}

/** Drains and discards at most `max` bytes of a body we do not need. */
export async function discard(body: Readable, max = 64 * 1024): Promise<void> {
  try {
    await readBounded(body, max, 'response body');
  } catch {
    dispose(body);
  }
}
