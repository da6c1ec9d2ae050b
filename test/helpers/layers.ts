import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

/** Tar layers built entry by entry with tar-stream, hostile ones included (THREATS §4). */
export type EntrySpec = { name: string; type?: tar.Header['type']; body?: string; linkname?: string; mode?: number };

export async function tarLayer(entries: readonly EntrySpec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? (e.body !== undefined ? 'file' : 'directory');
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      linkname: e.linkname,
      mtime: new Date(1_700_000_000_000),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, e.body ?? '', cb);
      else pack.entry({ ...header, size: 0 }, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function sha256(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export function gzip(b: Buffer): Buffer {
  return gzipSync(b);
}
