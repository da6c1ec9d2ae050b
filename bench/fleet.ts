import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGatewayProcess, type GatewayProcess } from '../test/helpers/gateway-process.js';
import { startHaproxy, type TestHaproxy } from '../test/helpers/haproxy.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { sharedState } from '../test/helpers/shared-state.js';
import { startSwift } from '../test/helpers/swift.js';
import { tempDir } from '../test/helpers/tmp.js';
import { countingProxy, peakRssMb, portcullis } from './contenders.js';

/**
 * The fleet: three `portcullis serve` processes on one PostgreSQL and one Swift bucket
 * (s3api) behind HAProxy, as README "Running a fleet" sets them up. Warm throughput
 * through the balancer with one replica and with three (the same clients at once),
 * 32 concurrent cold pulls of one layer through the fleet (upstream fetches counted),
 * and the peak RSS of one gateway serving 256 warm clients at once.
 */
type Log = (m: string) => void;
export interface FleetLayer {
  readonly digest: string;
  readonly size: number;
}

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const WARM_CLIENTS = 6;
const MANY = 256;
const RANGE_BYTES = 16 * 1024 * 1024;

/** curl processes at once; resolves with the seconds until the last ended and the bytes they got. */
function curls(urls: readonly string[], extra: readonly string[] = []): Promise<{ seconds: number; failed: number }> {
  const start = process.hrtime.bigint();
  return Promise.all(
    urls.map(
      (u) =>
        new Promise<number>((resolve) => {
          const c = spawn('curl', ['-sf', '-o', '/dev/null', ...extra, u], { stdio: 'ignore' });
          c.once('exit', (code) => resolve(code === 0 ? 0 : 1));
        }),
    ),
  ).then((codes) => ({
    seconds: Number(process.hrtime.bigint() - start) / 1e9,
    failed: codes.reduce((a, b) => a + b, 0),
  }));
}

export async function benchFleet(
  o: { upstreamHost: string; upstreamUrl: string; pubKey: string; repo: string; layers: readonly FleetLayer[] },
  log: Log,
): Promise<Record<string, number | undefined>> {
  const values: Record<string, number | undefined> = {};
  const [warmLayer, coldLayer] = o.layers as [FleetLayer, FleetLayer];
  const mb = warmLayer.size / 2 ** 20;
  const counter = await countingProxy(o.upstreamUrl);
  const [pg, swift] = await Promise.all([startPostgres(), startSwift()]);
  const dir = tempDir('portcullis-bench-fleet-');
  const replicas: GatewayProcess[] = [];
  const balancers: TestHaproxy[] = [];
  try {
    const shared = await sharedState(pg, swift);
    for (const [name, content] of Object.entries(shared.files)) writeFileSync(join(dir.path, name), content);
    writeFileSync(join(dir.path, 'trusted.pub'), readFileSync(o.pubKey));
    writeFileSync(
      join(dir.path, 'policy.yaml'),
      `rules:\n  - scope: ${o.upstreamHost}/bench\n    require:\n      - cosign: { keys: [trusted.pub] }\n`,
    );
    for (let i = 0; i < 3; i++) {
      const config = join(dir.path, `replica-${i}.yaml`);
      writeFileSync(
        config,
        [
          'listen: 127.0.0.1:0',
          `dataDir: data-${i}`,
          'policy: policy.yaml',
          // info: the process says when it has started (and where).
          'logLevel: info',
          shared.extraConfig,
          'upstreams:',
          `  - { name: "${o.upstreamHost}", url: "${counter.url}", prefix: up }`,
          '',
        ].join('\n'),
      );
      // The first replica makes the schema; the others find it current.
      replicas.push(await startGatewayProcess(config, { timeoutMs: 60_000 }));
    }
    const one = await startHaproxy([replicas[0]?.port as number]);
    balancers.push(one);
    const three = await startHaproxy(replicas.map((r) => r.port));
    balancers.push(three);
    const path = `/v2/up/bench/${o.repo}`;
    for (const lb of [one, three])
      for (let i = 0; i < 3; i++) {
        const m = await fetch(`${lb.url}${path}/manifests/1`, { headers: { accept: OCI } });
        await m.arrayBuffer();
        if (!m.ok) throw new Error(`the fleet did not admit the bench image: ${m.status}`);
      }

    log('fleet: 32 concurrent cold pulls of one layer through three replicas');
    const before = counter.blobGets(coldLayer.digest);
    const cold = await curls(Array.from({ length: 32 }, () => `${three.url}${path}/blobs/${coldLayer.digest}`));
    values['32 cold clients s'] = cold.seconds;
    values['32 cold clients: upstream fetches'] = counter.blobGets(coldLayer.digest) - before;
    values['32 cold clients: failed'] = cold.failed;

    log(`fleet: warm throughput, ${WARM_CLIENTS} clients at once, one replica vs three`);
    await curls([`${three.url}${path}/blobs/${warmLayer.digest}`]);
    for (const [name, lb] of [
      ['1 replica', one],
      ['3 replicas', three],
    ] as const) {
      const runs: number[] = [];
      for (let r = 0; r < 2; r++) {
        const w = await curls(Array.from({ length: WARM_CLIENTS }, () => `${lb.url}${path}/blobs/${warmLayer.digest}`));
        if (w.failed > 0) throw new Error(`${w.failed} warm clients failed through ${name}`);
        runs.push((WARM_CLIENTS * mb) / w.seconds);
      }
      values[`warm MB/s, ${name}`] = Math.max(...runs);
    }
  } finally {
    for (const b of balancers) await b.stop();
    for (const r of replicas) await r.kill();
    await Promise.all([pg.stop(), swift.stop(), counter.stop()]);
    dir.cleanup();
  }

  log(`one gateway (embedded defaults): ${MANY} warm clients at once`);
  const gw = await portcullis(o.upstreamHost, o.upstreamUrl, o.pubKey);
  try {
    const m = await fetch(`${gw.url}/v2/up/bench/${o.repo}/manifests/1`, { headers: { accept: OCI } });
    await m.arrayBuffer();
    const url = `${gw.url}/v2/up/bench/${o.repo}/blobs/${warmLayer.digest}`;
    await curls([url]);
    const idle = peakRssMb(gw.pid);
    const many = await curls(
      Array.from({ length: MANY }, () => url),
      ['-r', `0-${Math.min(RANGE_BYTES, warmLayer.size) - 1}`],
    );
    values[`${MANY} warm clients s`] = many.seconds;
    values[`${MANY} warm clients: failed`] = many.failed;
    values['peak RSS MB before'] = idle;
    values[`peak RSS MB with ${MANY} clients`] = peakRssMb(gw.pid);
  } finally {
    await gw.stop();
  }
  return values;
}
