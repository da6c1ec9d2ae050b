import { createHash, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signStatement, verificationSummary } from '../../policies/attestation.js';

/**
 * An in-process registry for faults a real registry cannot produce (wrong digest,
 * truncated body, slow drip, oversize or duplicate-key manifests, 429/5xx). It
 * records every request so tests can count upstream fetches and check headers.
 */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface FaultRegistry {
  readonly url: string;
  readonly host: string;
  readonly requests: { method: string; url: string; headers: IncomingMessage['headers'] }[];
  route(method: string, path: string, handler: Handler): void;
  stop(): Promise<void>;
}

export async function startFaultRegistry(): Promise<FaultRegistry> {
  const routes = new Map<string, Handler>();
  const requests: FaultRegistry['requests'] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const path = (req.url ?? '').split('?')[0] ?? '';
    const handler = routes.get(`${req.method} ${path}`);
    if (handler) return handler(req, res);
    if (path === '/v2/') return json(res, 200, {});
    json(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] });
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    route: (method, path, handler) => routes.set(`${method} ${path}`, handler),
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** An OCI image manifest for the given layer bytes, and a route for it at `repo:tag` and by digest. */
export function serveImage(
  reg: FaultRegistry,
  repo: string,
  tag: string,
  layers: { bytes: Buffer; declaredSize?: number; digest?: string }[],
): { manifest: Buffer; digest: string; layerDigests: string[] } {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const layerDescs = layers.map((l) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar',
    digest: l.digest ?? sha256(l.bytes),
    size: l.declaredSize ?? l.bytes.length,
  }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layerDescs,
    }),
  );
  const digest = sha256(manifest);
  const sendManifest: Handler = (req, res) => {
    res.writeHead(200, {
      'content-type': 'application/vnd.oci.image.manifest.v1+json',
      'content-length': manifest.length,
      'docker-content-digest': digest,
    });
    res.end(req.method === 'HEAD' ? undefined : manifest);
  };
  for (const method of ['GET', 'HEAD']) {
    reg.route(method, `/v2/${repo}/manifests/${tag}`, sendManifest);
    reg.route(method, `/v2/${repo}/manifests/${digest}`, sendManifest);
  }
  reg.route('GET', `/v2/${repo}/blobs/${sha256(config)}`, (_req, res) => {
    res.writeHead(200, { 'content-length': config.length });
    res.end(config);
  });
  return { manifest, digest, layerDigests: layerDescs.map((d) => d.digest) };
}

export function acceptAnythingPolicy(): string {
  return 'version: 1\ndefault: accept-anything\nrules: []\n';
}

/**
 * Serves, for each of `subjects`, a `.att` tag holding one gateway-style attestation
 * envelope (signed with `key`) for `attested` under `name`: a fake gateway for
 * faults a real one cannot produce (forged layers, switched manifests).
 */
export function serveGatewayAttestation(
  reg: FaultRegistry,
  repo: string,
  opts: { attested: string; name: string; key: KeyObject; subjects: readonly string[] },
): void {
  const envelope = signStatement(
    verificationSummary({
      subjectName: opts.name,
      subjectDigest: opts.attested,
      verifierId: 'urn:test',
      verifierVersion: '0',
      timeVerified: new Date(),
      resourceUri: `docker://${opts.name}@${opts.attested}`,
      policy: { uri: 'policy.yaml', digest: { sha256: 'a'.repeat(64) } },
      inputAttestations: [],
    }),
    opts.key,
  );
  const envDigest = sha256(envelope);
  const att = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 },
      layers: [
        {
          mediaType: 'application/vnd.dsse.envelope.v1+json',
          digest: envDigest,
          size: envelope.length,
          annotations: {
            predicateType: 'https://slsa.dev/verification_summary/v1',
            'dev.portcullis.attestation': 'verification-summary',
          },
        },
      ],
    }),
  );
  for (const subject of opts.subjects) {
    reg.route('GET', `/v2/${repo}/manifests/${subject.replace(':', '-')}.att`, (_req, res) =>
      res
        .writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': att.length })
        .end(att),
    );
  }
  reg.route('GET', `/v2/${repo}/blobs/${envDigest}`, (_req, res) =>
    res.writeHead(200, { 'content-length': envelope.length }).end(envelope),
  );
}
