import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  acceptAnythingPolicy,
  serveImage,
  sha256,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/ports.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { sharedState } from '../helpers/shared-state.js';
import { startSwift, type TestSwift } from '../helpers/swift.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Replicas sharing PostgreSQL (fill leases) and an S3-compatible bucket (Swift s3api):
 * 32 concurrent cold requests for one blob spread over three gateways make one
 * upstream fetch; a replica killed (SIGKILL) while it holds the lease loses it when
 * the lease lapses, and another replica fetches the blob for its waiting client.
 * The upstream drips the blob (a pace a real registry does not offer on demand).
 */
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('a fleet on one database and one bucket fetches a cold blob once', () => {
  let up: FaultRegistry;
  let pg: TestPostgres;
  let swift: TestSwift;
  const gateways: TestGateway[] = [];
  let victim: GatewayProcess | undefined;
  const dir = tempDir('portcullis-fleet-');
  const blobs: Record<string, Buffer> = {};
  const digests: Record<string, string> = {};
  const paused = new Set<string>();

  before(async () => {
    [up, pg, swift] = await Promise.all([startFaultRegistry(), startPostgres(), startSwift()]);
    for (const [name, size] of [
      ['shared', 3 * 1024 * 1024],
      ['killed', 2 * 1024 * 1024],
    ] as const) {
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 7 + name.length) & 0xff;
      blobs[name] = bytes;
      const digest = serveImage(up, `fleet/${name}`, 'v1', [{ bytes }]).layerDigests[0] as string;
      digests[name] = digest;
      up.route('GET', `/v2/fleet/${name}/blobs/${digest}`, (_req, res) => {
        res.writeHead(200, { 'content-length': bytes.length });
        let offset = 0;
        const timer = setInterval(() => {
          // Stalls past its first MiB and a bit (the gateway forwards in batches) until resumed.
          if (paused.has(name) && offset >= 1.25 * 1024 * 1024) return;
          res.write(bytes.subarray(offset, offset + 128 * 1024));
          offset += 128 * 1024;
          if (offset >= bytes.length) {
            clearInterval(timer);
            res.end();
          }
        }, 15);
        res.on('close', () => clearInterval(timer));
      });
    }
  });
  after(async () => {
    await victim?.kill();
    for (const g of gateways) await g.stop();
    await Promise.all([up?.stop(), pg?.stop(), swift?.stop()]);
    dir.cleanup();
  });

  const configFor = () => sharedState(pg, swift);
  const startReplica = async (shared: Awaited<ReturnType<typeof configFor>>) => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: up }`,
      policy: acceptAnythingPolicy(),
      files: shared.files,
      extraConfig: shared.extraConfig,
    });
    gateways.push(gw);
    return gw;
  };
  const fetches = (name: string) => up.requests.filter((r) => r.url.endsWith(digests[name] as string)).length;

  test('32 concurrent cold requests over three replicas: one upstream fetch, every client verified bytes', async () => {
    const shared = await configFor();
    const replicas = await Promise.all([startReplica(shared), startReplica(shared), startReplica(shared)]);
    const admitted = await fetch(`${replicas[0]?.url}/v2/up/fleet/shared/manifests/v1`, { headers: { accept: OCI } });
    assert.equal(admitted.status, 200);
    await admitted.arrayBuffer();
    const bodies = await Promise.all(
      Array.from({ length: 32 }, async (_, i) => {
        const gw = replicas[i % 3] as TestGateway;
        const res = await fetch(`${gw.url}/v2/up/fleet/shared/blobs/${digests.shared}`);
        assert.equal(res.status, 200);
        return Buffer.from(await res.arrayBuffer());
      }),
    );
    for (const b of bodies) assert.equal(sha256(b), digests.shared);
    assert.equal(fetches('shared'), 1, 'one upstream fetch for the whole fleet');
  });

  test('a replica killed while it holds the lease: another takes over once it lapses, and serves its client', async () => {
    const shared = await configFor();
    for (const [name, content] of Object.entries(shared.files)) writeFileSync(join(dir.path, name), content);
    writeFileSync(join(dir.path, 'policy.yaml'), acceptAnythingPolicy());
    writeFileSync(
      join(dir.path, 'config.yaml'),
      [
        'listen: 127.0.0.1:0',
        'dataDir: data',
        'policy: policy.yaml',
        'logLevel: info',
        shared.extraConfig,
        'upstreams:',
        `  - { name: "${up.host}", url: "${up.url}", prefix: up }`,
        '',
      ].join('\n'),
    );
    const victimProcess = await startGatewayProcess(join(dir.path, 'config.yaml'));
    victim = victimProcess;
    const url = victimProcess.url;
    const survivor = await startReplica(shared);
    const m = await fetch(`${url}/v2/up/fleet/killed/manifests/v1`, { headers: { accept: OCI } });
    assert.equal(m.status, 200);
    await m.arrayBuffer();

    // The victim starts the fill and stalls upstream after the first piece, holding the lease.
    paused.add('killed');
    let got = 0;
    const victimClient = new Promise<void>((resolve) => {
      const req = request(`${url}/v2/up/fleet/killed/blobs/${digests.killed}`, (res) => {
        res.on('data', (c: Buffer) => (got += c.length));
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
      req.end();
    });
    await waitFor(async () => fetches('killed') === 1 && got > 0, 'the victim to start its fill').catch(
      (err: Error) => {
        throw new Error(`${err.message}: fetches ${fetches('killed')}, received ${got}`);
      },
    );
    // The survivor's client waits behind the victim's lease.
    const waiting = fetch(`${survivor.url}/v2/up/fleet/killed/blobs/${digests.killed}`);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(fetches('killed'), 1, 'the survivor does not fetch while the lease is held');
    await victimProcess.kill();
    await victimClient;
    assert.ok(got < (blobs.killed?.length ?? 0), 'the victim never sent the whole blob');
    paused.delete('killed');
    const res = await waiting;
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digests.killed);
    assert.equal(fetches('killed'), 2, 'the survivor fetched it once the lease lapsed');
  });
});
