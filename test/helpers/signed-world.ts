import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestGateway, type TestGateway } from './gateway.js';
import { cosignKeyPair, cosignSign, type CosignKey } from './cosign.js';
import { buildImage, buildIndex, pushImage } from './images.js';
import { startRegistry, type TestRegistry } from './registry.js';
import { tempDir } from './tmp.js';

/**
 * One upstream registry populated with real images and real cosign signatures, one
 * repository per situation the gateway must tell apart:
 *   test/signed      OCI image signed with the trusted key
 *   test/docker      Docker schema 2 image signed with the trusted key
 *   test/multi       OCI index (amd64 + arm64) whose index digest is signed
 *   test/unsigned    no signature at all
 *   test/otherkey    signed with a key the policy does not trust
 *   test/wrongdigest a valid signature for another image, copied to this image's .sig tag
 *   test/tampered    the signature annotation altered after signing
 */
export interface SignedWorld {
  readonly registry: TestRegistry;
  readonly trusted: CosignKey;
  readonly other: CosignKey;
  readonly digests: Record<
    'signed' | 'docker' | 'multi' | 'unsigned' | 'otherkey' | 'wrongdigest' | 'tampered',
    string
  >;
  readonly dir: string;
  stop(): Promise<void>;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export async function buildSignedWorld(
  opts: { basicAuth?: { user: string; password: string }; accessLog?: boolean } = {},
): Promise<SignedWorld> {
  const dir = tempDir('portcullis-world-');
  const registry = await startRegistry({
    ...(opts.basicAuth ? { basicAuth: opts.basicAuth } : {}),
    ...(opts.accessLog ? { accessLog: true } : {}),
  });
  const creds = opts.basicAuth ? `${opts.basicAuth.user}:${opts.basicAuth.password}` : undefined;
  const registryCreds = opts.basicAuth ? { user: opts.basicAuth.user, password: opts.basicAuth.password } : undefined;
  try {
    const layout = join(dir.path, 'layout');
    const r = registry.host;
    for (const name of ['signed', 'docker', 'unsigned', 'otherkey', 'wrongdigest', 'tampered', 'decoy'])
      await buildImage(layout, name, { text: name });
    await buildIndex(layout, 'multi');
    const push = (tag: string, repo: string, extra: { format?: 'v2s2'; all?: boolean } = {}) =>
      pushImage(layout, tag, `${r}/${repo}:1`, { ...extra, ...(creds ? { creds } : {}) });
    const digests = {
      signed: await push('signed', 'test/signed'),
      docker: await push('docker', 'test/docker', { format: 'v2s2' }),
      multi: await push('multi', 'test/multi', { all: true }),
      unsigned: await push('unsigned', 'test/unsigned'),
      otherkey: await push('otherkey', 'test/otherkey'),
      wrongdigest: await push('wrongdigest', 'test/wrongdigest'),
      tampered: await push('tampered', 'test/tampered'),
    };
    const decoy = await pushImage(layout, 'decoy', `${r}/test/wrongdigest:decoy`, creds ? { creds } : {});
    const trusted = await cosignKeyPair(dir.path, 'trusted');
    const other = await cosignKeyPair(dir.path, 'other');
    const sign = (k: CosignKey, repo: string, digest: string) =>
      cosignSign(k, `${r}/${repo}@${digest}`, registryCreds ? { registryCreds } : {});
    await sign(trusted, 'test/signed', digests.signed);
    await sign(trusted, 'test/docker', digests.docker);
    await sign(trusted, 'test/multi', digests.multi);
    await sign(other, 'test/otherkey', digests.otherkey);
    await sign(trusted, 'test/tampered', digests.tampered);
    await sign(trusted, 'test/wrongdigest', decoy);
    const auth: Record<string, string> = creds
      ? { authorization: `Basic ${Buffer.from(creds).toString('base64')}` }
      : {};
    // The decoy's valid signature, placed where the wrongdigest image's signature belongs.
    const decoySig = await getManifest(registry.url, 'test/wrongdigest', sigTag(decoy), auth);
    await putManifest(registry.url, 'test/wrongdigest', sigTag(digests.wrongdigest), decoySig, auth);
    // Flip one byte of the decoded signature of the tampered image.
    const sig = JSON.parse(
      (await getManifest(registry.url, 'test/tampered', sigTag(digests.tampered), auth)).toString(),
    ) as { layers: { annotations: Record<string, string> }[] };
    const layer = sig.layers[0];
    if (!layer) throw new Error('no signature layer');
    const raw = Buffer.from(layer.annotations['dev.cosignproject.cosign/signature'] ?? '', 'base64');
    raw[raw.length - 3] = (raw[raw.length - 3] ?? 0) ^ 0x01;
    layer.annotations['dev.cosignproject.cosign/signature'] = raw.toString('base64');
    await putManifest(registry.url, 'test/tampered', sigTag(digests.tampered), Buffer.from(JSON.stringify(sig)), auth);
    return {
      registry,
      trusted,
      other,
      digests,
      dir: dir.path,
      async stop() {
        await registry.stop();
        dir.cleanup();
      },
    };
  } catch (err) {
    await registry.stop();
    dir.cleanup();
    throw err;
  }
}

export function sigTag(digest: string): string {
  return `${digest.replace(':', '-')}.sig`;
}

export async function getManifest(
  base: string,
  repo: string,
  ref: string,
  auth: Record<string, string>,
): Promise<Buffer> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST, ...auth } });
  if (res.status !== 200) throw new Error(`GET ${repo}:${ref} answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

export async function putManifest(
  base: string,
  repo: string,
  ref: string,
  body: Buffer,
  auth: Record<string, string>,
): Promise<void> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    headers: { 'content-type': OCI_MANIFEST, ...auth },
    body,
  });
  if (res.status !== 201) throw new Error(`PUT ${repo}:${ref} answered ${res.status}: ${await res.text()}`);
}

/** The policy used with a signed world: `test/` needs the trusted key. */
export function worldPolicy(upstreamName: string): string {
  return [
    'version: 1',
    'default: reject',
    'rules:',
    `  - scope: ${upstreamName}/test`,
    '    require:',
    '      - cosign: { keys: [trusted.pub] }',
    '',
  ].join('\n');
}

/** A signed world with a gateway in front of it (prefix `up`, policy: `test/` needs the trusted key). */
/** A gateway in front of the world's registry (prefix `up`) under worldPolicy, with more config and files. */
export function gatewayForWorld(
  world: SignedWorld,
  opts: { extraConfig?: string; files?: Record<string, string | Buffer> } = {},
): Promise<TestGateway> {
  return startTestGateway({
    upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
    policy: worldPolicy(world.registry.host),
    files: { 'trusted.pub': readFileSync(world.trusted.pub), ...opts.files },
    ...(opts.extraConfig !== undefined ? { extraConfig: opts.extraConfig } : {}),
  });
}

export async function startWorldGateway(
  opts: { accessLog?: boolean } = {},
): Promise<{ world: SignedWorld; gw: TestGateway; stop: () => Promise<void> }> {
  const world = await buildSignedWorld(opts);
  try {
    const gw = await gatewayForWorld(world);
    return {
      world,
      gw,
      async stop() {
        await gw.stop();
        await world.stop();
      },
    };
  } catch (err) {
    await world.stop();
    throw err;
  }
}

/**
 * The requests a client made to the upstream itself since `mark` (what the gateway
 * asks for carries its own user agent): a set-up in which the gateway is the one
 * route leaves this empty.
 */
export function clientRequestsSince(world: SignedWorld, mark: number): string[] {
  return world.registry
    .requests()
    .slice(mark)
    .filter((r) => r.userAgent !== 'portcullis')
    .map((r) => `${r.method} ${r.path} ${r.status} (${r.userAgent})`);
}
