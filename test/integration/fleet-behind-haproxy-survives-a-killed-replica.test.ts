import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acceptAnythingPolicy } from '../helpers/fault-registry.js';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process.js';
import { startHaproxy, type TestHaproxy } from '../helpers/haproxy.js';
import { sha256 } from '../helpers/layers.js';
import { run, type RunResult } from '../helpers/peers.js';
import { testPodman, type TestPodman } from '../helpers/podman.js';
import { freePort } from '../helpers/ports.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { pushFileImage } from '../helpers/registry-push.js';
import { sharedState } from '../helpers/shared-state.js';
import { startSwift, type TestSwift } from '../helpers/swift.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The fleet: three `portcullis serve` processes on one real PostgreSQL and one real
 * S3-compatible bucket (Swift s3api), behind a real HAProxy, docker-registry as the
 * upstream. skopeo and podman pull one image through the load balancer at once; the
 * replica that first serves its 96 MiB layer is SIGKILLed 150 ms into that request
 * (its fill, or its answer, under way). HAProxy sends requests the dead replica never
 * answered to another one; a client whose transfer was cut sees a cut connection, never
 * wrong bytes, and succeeds when run again. Both end with the right image, and
 * `portcullis fsck` finds the shared store intact.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));

describe('three replicas behind HAProxy: one killed mid-pull', () => {
  let pg: TestPostgres;
  let swift: TestSwift;
  let registry: TestRegistry;
  let lb: TestHaproxy | undefined;
  let podman: TestPodman | undefined;
  const replicas: GatewayProcess[] = [];
  const dir = tempDir('portcullis-fleet-lb-');

  before(async () => {
    [pg, swift, registry] = await Promise.all([startPostgres(), startSwift(), startRegistry()]);
  });
  after(async () => {
    podman?.cleanup();
    await lb?.stop();
    for (const r of replicas) await r.kill();
    await Promise.all([pg?.stop(), swift?.stop(), registry?.stop()]);
    dir.cleanup();
  });

  test('skopeo and podman pull through the load balancer while a replica dies; the store stays intact', async () => {
    const image = await pushFileImage(registry.url, 'fleet/big', '1', {
      name: 'data.bin',
      bytes: randomBytes(96 << 20),
    });
    const shared = await sharedState(pg, swift);
    writeFileSync(join(dir.path, 'policy.yaml'), acceptAnythingPolicy());
    for (const [name, content] of Object.entries(shared.files)) writeFileSync(join(dir.path, name), content);
    const ports = [await freePort(), await freePort(), await freePort()];
    const configs = ports.map((port, i) => {
      const file = join(dir.path, `replica-${i + 1}.yaml`);
      writeFileSync(
        file,
        [
          `listen: 127.0.0.1:${port}`,
          `dataDir: data-${i + 1}`,
          'policy: policy.yaml',
          'logLevel: info',
          shared.extraConfig,
          'upstreams:',
          `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
          '',
        ].join('\n'),
      );
      return file;
    });
    let killed: Promise<void> | undefined;
    let victim = -1;
    for (const [i, config] of configs.entries()) {
      replicas.push(
        await startGatewayProcess(config, {
          onLine: (entry) => {
            const req = entry.req as { url?: string } | undefined;
            if (killed || entry.msg !== 'incoming request' || !req?.url?.endsWith(`/blobs/${image.layerDigest}`))
              return;
            victim = i;
            // A moment into the response: bytes of the layer are on their way to the client.
            killed = new Promise((r) => setTimeout(r, 150)).then(() => (replicas[i] as GatewayProcess).kill());
          },
        }),
      );
    }
    lb = await startHaproxy(ports);
    const ref = `${lb.host}/up/fleet/big:1`;
    mkdirSync(join(dir.path, 'out'));
    podman = testPodman(`[[registry]]\nlocation = "${lb.host}"\ninsecure = true\n`);
    // A client whose connection was cut mid-body sees it cut (never short bytes passed off
    // as whole: that would be a digest error) and is run again, as a user or a kubelet would.
    const failures: string[] = [];
    const retried = async (attempt: () => Promise<RunResult>): Promise<RunResult> => {
      for (let i = 0; ; i++) {
        const r = await attempt();
        if (r.code === 0 || i === 2) return r;
        failures.push(r.stderr);
      }
    };
    const podmanClient = podman;
    const [copy, pulled] = await Promise.all([
      retried(() =>
        run(
          'skopeo',
          [
            '--insecure-policy',
            'copy',
            '--retry-times',
            '3',
            '--src-tls-verify=false',
            `docker://${ref}`,
            `dir:${join(dir.path, 'out', 'skopeo')}`,
          ],
          { allowFail: true },
        ),
      ),
      retried(() => podmanClient.pull(ref)),
    ]);
    assert.ok(killed, 'a replica was killed while it served the layer');
    await killed;
    assert.equal(copy.code, 0, copy.stderr);
    assert.ok(failures.length <= 2, failures.join('\n'));
    for (const f of failures) {
      assert.doesNotMatch(f, /digest|checksum/i, 'a cut transfer is never completed with the wrong bytes');
      assert.match(f, /EOF|reset|502|503|broken pipe|connection/i, f);
    }
    assert.equal(sha256(readFileSync(join(dir.path, 'out', 'skopeo', image.layerDigest.slice(7)))), image.layerDigest);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.equal(await podman.digestOf(ref), image.digest);

    const survivor = configs[(victim + 1) % 3] as string;
    const check = await run(process.execPath, ['--', CLI, 'fsck', '--config', survivor, '--json'], { allowFail: true });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const report = JSON.parse(check.stdout) as { blobs: number; findings: unknown[] };
    assert.ok(report.blobs >= 3, 'layer, config and manifest are in the shared bucket');
    assert.deepEqual(report.findings, []);
  });
});
