import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `upstreamDown: serve-verified`: with the upstream (a real docker-registry) stopped, a
 * pull by tag gets the digest last verified for it, with a Warning header, and skopeo
 * pulls the whole image from the cache; the same registry under `fail` (the default)
 * answers 502; a tag never verified is not served. A circuit breaker stops an upstream
 * that accepts connections and never answers from costing every request its time-out.
 */
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('when the upstream is down', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-down-');
  const held: Socket[] = [];
  const silent = createServer((s) => void held.push(s));
  let silentPort = 0;

  before(async () => {
    world = await buildSignedWorld();
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as { port: number }).port;
    const port = world.registry.host.split(':')[1] as string;
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up, upstreamDown: serve-verified }`,
        `  - { name: "localhost:${port}", url: "${world.registry.url}", prefix: strict }`,
        `  - name: "127.0.0.2:${silentPort}"`,
        `    url: "http://127.0.0.1:${silentPort}"`,
        '    prefix: silent',
        '    timeouts: { headersMs: 400, totalMs: 800 }',
        '    breaker: { failures: 2, openSeconds: 60 }',
      ].join('\n'),
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${world.registry.host}/test`,
        '    require: [{ cosign: { keys: [trusted.pub] } }]',
        // The signatures name 127.0.0.1:PORT/test/…: under this name the repository is not theirs.
        `  - scope: localhost:${port}/test`,
        '    require: [{ cosign: { keys: [trusted.pub], identity: any } }]',
        `  - scope: 127.0.0.2:${silentPort}`,
        '    accept: anything',
        '',
      ].join('\n'),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
    });
  });
  after(async () => {
    await gw?.stop();
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
    await world?.stop();
    out.cleanup();
  });

  const manifest = (path: string) => fetch(`${gw.url}/v2/${path}`, { headers: { accept: OCI } });

  test('a verified tag is served from the cache with a Warning; under fail, or never verified, it is not', async () => {
    const pull = (prefix: string, dest: string) =>
      run(
        'skopeo',
        [
          '--insecure-policy',
          'copy',
          '--src-tls-verify=false',
          `docker://${gw.host}/${prefix}/test/signed:1`,
          `dir:${join(out.path, dest)}`,
        ],
        { allowFail: true },
      );
    assert.equal((await pull('up', 'online')).code, 0);
    const strictUp = await manifest('strict/test/signed/manifests/1');
    assert.equal(strictUp.status, 200);
    await strictUp.arrayBuffer();

    await world.registry.stop();
    const res = await manifest('up/test/signed/manifests/1');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), world.digests.signed);
    assert.match(res.headers.get('warning') ?? '', /^110 portcullis "/);
    await res.arrayBuffer();
    const offline = await pull('up', 'offline');
    assert.equal(offline.code, 0, offline.stderr);
    assert.deepEqual(
      readFileSync(join(out.path, 'offline', 'manifest.json')),
      readFileSync(join(out.path, 'online', 'manifest.json')),
    );

    const strict = await manifest('strict/test/signed/manifests/1');
    assert.equal(strict.status, 502);
    assert.equal(((await strict.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
    const never = await manifest('up/test/signed/manifests/never-pulled');
    assert.equal(never.status, 502);
    await never.arrayBuffer();
    assert.ok(gw.logs.some((l) => l.event === 'tag.served_verified'));
  });

  test('an upstream that never answers opens its circuit: later requests fail at once', async () => {
    const timed = async () => {
      const t0 = Date.now();
      const r = await manifest('silent/team/app/manifests/1');
      await r.arrayBuffer();
      return { status: r.status, ms: Date.now() - t0 };
    };
    const first = await timed();
    const second = await timed();
    assert.ok(first.status >= 500 && second.status >= 500);
    assert.ok(first.ms >= 350, `the first waits for its time-out (${first.ms} ms)`);
    const third = await timed();
    assert.equal(third.status, 502);
    assert.ok(third.ms < 200, `an open circuit answers at once (${third.ms} ms)`);
    assert.ok(gw.logs.some((l) => l.event === 'upstream.circuit_open' && l.upstream === `127.0.0.2:${silentPort}`));
  });
});
