import * as tar from 'tar-stream';
import { sha256 } from './layers.js';

/**
 * Pushes a one-file image (an uncompressed tar layer holding `file`) to a real registry
 * with the distribution API (monolithic uploads), for tests whose layer must be large.
 */
export async function pushFileImage(
  registryUrl: string,
  repo: string,
  tag: string,
  file: { name: string; bytes: Buffer },
): Promise<{ digest: string; layerDigest: string; layer: Buffer }> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  await new Promise<void>((resolve, reject) =>
    pack.entry({ name: file.name, mode: 0o644, mtime: new Date(1_700_000_000_000) }, file.bytes, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  pack.finalize();
  await ended;
  const layer = Buffer.concat(chunks);
  const layerDigest = sha256(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  );
  for (const blob of [layer, config]) {
    const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    await start.arrayBuffer();
    if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
    const location = new URL(start.headers.get('location') ?? '', registryUrl);
    location.searchParams.set('digest', sha256(blob));
    const put = await fetch(location, {
      method: 'PUT',
      body: blob,
      headers: { 'content-type': 'application/octet-stream' },
    });
    await put.arrayBuffer();
    if (put.status !== 201) throw new Error(`upload: ${put.status}`);
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
    }),
  );
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`manifest: ${res.status}`);
  return { digest: sha256(manifest), layerDigest, layer };
}
