import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  lutimesSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { peer, run } from './peers.js';
import { tempDir } from './tmp.js';

/**
 * Small real images built with umoci from busybox-static, without a container
 * engine. Timestamps are fixed, so the same inputs give the same digests.
 */
const T0 = '2024-01-01T00:00:00Z';

function touchTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) touchTree(p);
    lutimesSync(p, 0, 0);
  }
  utimesSync(dir, 0, 0);
}

export async function buildImage(
  layout: string,
  tag: string,
  opts: { arch?: string; text?: string } = {},
): Promise<void> {
  const work = tempDir('portcullis-umoci-');
  try {
    const umoci = peer('umoci');
    const busybox = peer('busybox');
    try {
      readFileSync(join(layout, 'index.json'));
    } catch {
      await run(umoci, ['init', '--layout', layout]);
    }
    const image = `${layout}:${tag}`;
    await run(umoci, ['new', '--image', image]);
    const b1 = join(work.path, 'b1');
    await run(umoci, ['unpack', '--image', image, b1]);
    const bin = join(b1, 'rootfs', 'bin');
    mkdirSync(bin, { recursive: true });
    chmodSync(bin, 0o755);
    copyFileSync(busybox, join(bin, 'busybox'));
    chmodSync(join(bin, 'busybox'), 0o755);
    for (const applet of ['sh', 'ls', 'cat', 'echo', 'true', 'sleep', 'id', 'env', 'pwd'])
      symlinkSync('busybox', join(bin, applet));
    touchTree(join(b1, 'rootfs'));
    await run(umoci, [
      'repack',
      '--history.created',
      T0,
      '--history.created_by',
      'busybox layer',
      '--image',
      image,
      b1,
    ]);
    const b2 = join(work.path, 'b2');
    await run(umoci, ['unpack', '--image', image, b2]);
    const srv = join(b2, 'rootfs', 'srv');
    mkdirSync(srv);
    chmodSync(srv, 0o755);
    writeFileSync(join(srv, 'hello.txt'), `${opts.text ?? 'hello'}\n`, { mode: 0o644 });
    // Readable by its owner only: a container sees it only when the image's ownership survived unpacking.
    writeFileSync(join(srv, 'owned-by-1000'), 'mine\n', { mode: 0o600 });
    chownSync(join(srv, 'owned-by-1000'), 1000, 1000);
    touchTree(join(b2, 'rootfs'));
    await run(umoci, ['repack', '--history.created', T0, '--history.created_by', 'hello layer', '--image', image, b2]);
    await run(umoci, [
      'config',
      '--no-history',
      '--created',
      T0,
      '--architecture',
      opts.arch ?? 'amd64',
      '--os',
      'linux',
      '--config.entrypoint',
      '/bin/sh',
      '--config.cmd',
      '-c',
      '--config.cmd',
      'cat /srv/hello.txt',
      '--config.env',
      'PATH=/bin',
      '--config.workingdir',
      '/',
      '--image',
      image,
    ]);
    await run(umoci, ['gc', '--layout', layout]);
  } finally {
    work.cleanup();
  }
}

/** An OCI index of two platform images (amd64, and arm64/v8 with the same rootfs). */
export async function buildIndex(layout: string, tag: string): Promise<void> {
  await buildImage(layout, `${tag}-amd64`, { arch: 'amd64', text: 'amd64' });
  await buildImage(layout, `${tag}-arm64`, { arch: 'arm64', text: 'arm64' });
  const indexPath = join(layout, 'index.json');
  const top = JSON.parse(readFileSync(indexPath, 'utf8')) as {
    manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
  };
  const find = (t: string) => {
    const d = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === t);
    if (!d) throw new Error(`no ${t} in layout`);
    return { mediaType: d.mediaType, digest: d.digest, size: d.size };
  };
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { ...find(`${tag}-amd64`), platform: { architecture: 'amd64', os: 'linux' } },
      { ...find(`${tag}-arm64`), platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
    ],
  });
  const hex = createHash('sha256').update(index).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), index);
  top.manifests = top.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag);
  top.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${hex}`,
    size: Buffer.byteLength(index),
    annotations: { 'org.opencontainers.image.ref.name': tag },
  });
  writeFileSync(indexPath, JSON.stringify(top));
}

/** Pushes `layout:tag` to `dest` (`host:port/repo:tag`) and returns the manifest digest there. */
export async function pushImage(
  layout: string,
  tag: string,
  dest: string,
  opts: { format?: 'oci' | 'v2s2'; all?: boolean; creds?: string } = {},
): Promise<string> {
  const work = tempDir('portcullis-push-');
  try {
    const digestFile = join(work.path, 'digest');
    const args = ['--insecure-policy', 'copy', '--dest-tls-verify=false', '--digestfile', digestFile];
    if (opts.format === 'v2s2') args.push('--format', 'v2s2');
    if (opts.all) args.push('--all', '--preserve-digests');
    if (opts.creds) args.push('--dest-creds', opts.creds);
    args.push(`oci:${layout}:${tag}`, `docker://${dest}`);
    await run('skopeo', args);
    return readFileSync(digestFile, 'utf8').trim();
  } finally {
    work.cleanup();
  }
}
