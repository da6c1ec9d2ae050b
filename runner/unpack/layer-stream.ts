import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { HashingCounter } from '../../oci/digest.js';
import { UnpackError } from './errors.js';

/**
 * A layer blob as an uncompressed tar stream. The compression is read from the
 * bytes (gzip 1f 8b, zstd 28 b5 2f fd, otherwise plain tar), not trusted from the
 * media type. The uncompressed bytes are hashed (the diffID) and counted against a
 * budget, so a decompression bomb stops at the budget (THREATS REG-06).
 */
export interface LayerStream {
  readonly tar: Readable;
  readonly counter: HashingCounter;
}

export function openLayer(path: string, maxUncompressedBytes: number): LayerStream {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  const raw = createReadStream(path, { highWaterMark: 1024 * 1024 });
  let plain: Readable;
  if (n >= 2 && head[0] === 0x1f && head[1] === 0x8b) plain = raw.pipe(createGunzip());
  else if (n === 4 && head.readUInt32BE(0) === 0x28b52ffd) plain = raw.pipe(zstdDecompressor());
  else plain = raw;
  raw.on('error', (err) => plain.destroy(err));
  const counter = new HashingCounter('sha256', maxUncompressedBytes);
  plain.on('error', (err) =>
    counter.destroy(new UnpackError('LAYER_COMPRESSION', `cannot decompress the layer: ${err.message}`)),
  );
  return { tar: plain.pipe(counter), counter };
}

function zstdDecompressor(): Transform {
  const sink: { out?: Transform } = {};
  const dec = new Decompress((chunk) => {
    sink.out?.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        dec.push(chunk);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      try {
        dec.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  sink.out = out;
  return out;
}
