import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';

/**
 * Benchmark images written straight into an OCI layout, streamed so that a 1 GiB
 * image never sits in memory. Layers are uncompressed tars (ustar), so that every
 * contender moves the same bytes and no one's compressor is measured.
 */
const BLOCK = 512;

function header(name: string, size: number, type: '0' | '5', mode: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write(`${(1_700_000_000).toString(8).padStart(11, '0')}\0`, 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

class BlobWriter {
  readonly #hash = createHash('sha256');
  readonly #tmp: string;
  readonly #out;
  size = 0;
  constructor(private readonly layout: string) {
    this.#tmp = join(layout, 'blobs', 'sha256', `tmp-${randomBytes(6).toString('hex')}`);
    this.#out = createWriteStream(this.#tmp, { highWaterMark: 1 << 20 });
  }
  async write(chunk: Buffer): Promise<void> {
    this.#hash.update(chunk);
    this.size += chunk.length;
    if (!this.#out.write(chunk)) await once(this.#out, 'drain');
  }
  async close(): Promise<{ digest: string; size: number }> {
    this.#out.end();
    await once(this.#out, 'finish');
    const hex = this.#hash.digest('hex');
    renameSync(this.#tmp, join(this.layout, 'blobs', 'sha256', hex));
    return { digest: `sha256:${hex}`, size: this.size };
  }
}

async function tarLayer(
  layout: string,
  entries: (w: (name: string, data: Buffer | { random: number }) => Promise<void>) => Promise<void>,
): Promise<{ digest: string; size: number }> {
  const w = new BlobWriter(layout);
  await entries(async (name, data) => {
    const size = Buffer.isBuffer(data) ? data.length : data.random;
    await w.write(header(name, size, '0', 0o644));
    if (Buffer.isBuffer(data)) await w.write(data);
    else for (let left = size; left > 0; left -= 1 << 20) await w.write(randomBytes(Math.min(left, 1 << 20)));
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) await w.write(Buffer.alloc(pad));
  });
  await w.write(Buffer.alloc(BLOCK * 2));
  return w.close();
}

function putJson(layout: string, value: unknown): { digest: string; size: number; bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length, bytes };
}

export interface BenchImage {
  readonly tag: string;
  readonly manifestDigest: string;
  readonly layers: readonly { digest: string; size: number }[];
}

/** Writes the two benchmark images into a new layout at `dir`. */
export async function writeBenchLayout(
  dir: string,
  opts: { layerMiB: number; layers: number; smallFiles: number },
): Promise<BenchImage[]> {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const images: BenchImage[] = [];
  const big = [];
  for (let i = 0; i < opts.layers; i++)
    big.push(await tarLayer(dir, async (add) => add(`data/blob-${i}.bin`, { random: opts.layerMiB << 20 })));
  const small = [
    await tarLayer(dir, async (add) => {
      for (let i = 0; i < opts.smallFiles; i++)
        await add(`files/d${Math.floor(i / 1000)}/f${i}.txt`, Buffer.from(`file ${i}\n`));
    }),
  ];
  const index: unknown[] = [];
  for (const [tag, layers] of [
    ['big', big],
    ['small', small],
  ] as const) {
    const config = putJson(dir, {
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    });
    const manifest = putJson(dir, {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: l.digest,
        size: l.size,
      })),
    });
    index.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: manifest.digest,
      size: manifest.size,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    });
    images.push({ tag, manifestDigest: manifest.digest, layers });
  }
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: index }));
  return images;
}
