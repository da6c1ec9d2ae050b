import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { startDockerEngine, type TestEngine } from '../helpers/engines.js';
import { clientRequestsSince, startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The README's Docker Engine set-up: images named through the gateway's host
 * (`gateway/prefix/repository`), so the gateway is the only registry Docker talks to.
 * A real dockerd (root, `--bridge=none --iptables=false`, vfs, its own data root and
 * socket) pulls an admitted image and fails on a denied one, and the upstream never
 * hears from it. Everything dockerd would send elsewhere goes to a trap proxy on
 * 127.0.0.1 — which shows why `registry-mirrors` is not offered: on a failure at the
 * mirror, Docker goes to Docker Hub itself.
 */
describe('Docker Engine pulls only through the gateway when images are named by it', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const dir = tempDir('portcullis-docker-');
  let engine: TestEngine | undefined;
  let trap: Server | undefined;
  const trapped: string[] = [];
  const docker = (...args: string[]) => (engine as TestEngine).cli(args);

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway({ accessLog: true }));
    // Whatever dockerd sends to another address lands here, and goes no further.
    trap = createServer((req, res) => {
      trapped.push(`${req.method} ${req.url}`);
      res.writeHead(502).end();
    });
    trap.on('connect', (req, socket) => {
      trapped.push(`CONNECT ${req.url}`);
      socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    });
    await new Promise<void>((r) => trap?.listen(0, '127.0.0.1', r));
    const trapUrl = `http://127.0.0.1:${(trap.address() as { port: number }).port}`;
    engine = await startDockerEngine(dir.path, {
      args: ['--registry-mirror', `http://${gw.host}`],
      env: { HTTP_PROXY: trapUrl, HTTPS_PROXY: trapUrl, NO_PROXY: '127.0.0.1,localhost' },
    });
  });
  after(async () => {
    await engine?.stop();
    dir.cleanup();
    await new Promise((r) => (trap ? trap.close(r) : r(undefined)));
    await stop();
  });

  test('a signed image named through the gateway is pulled', async () => {
    const mark = world.registry.requests().length;
    const trappedBefore = trapped.length;
    const ref = `${gw.host}/up/test/signed:1`;
    const r = await docker('pull', ref);
    assert.equal(r.code, 0, `${r.stderr}\n${engine?.log() ?? ''}`);
    const id = await docker('image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref);
    assert.match(id.stdout, new RegExp(world.digests.signed));
    assert.ok(decisionLogs(gw).some((l) => l.digest === world.digests.signed && l.allowed === true));
    assert.deepEqual(clientRequestsSince(world, mark), []);
    assert.deepEqual(trapped.slice(trappedBefore), []);
  });

  test('an unsigned image fails with the denial, and Docker goes nowhere else', async () => {
    const mark = world.registry.requests().length;
    const trappedBefore = trapped.length;
    const r = await docker('pull', `${gw.host}/up/test/unsigned:1`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/i);
    assert.deepEqual(clientRequestsSince(world, mark), []);
    assert.deepEqual(trapped.slice(trappedBefore), []);
  });

  test('why not registry-mirrors: a Hub name the mirror does not serve is fetched from Docker Hub itself', async () => {
    const trappedBefore = trapped.length;
    const r = await docker('pull', 'docker.io/library/portcullis-not-served:1');
    assert.notEqual(r.code, 0, 'the trap answers 502, so nothing is pulled');
    assert.ok(
      trapped.slice(trappedBefore).some((t) => t.includes('registry-1.docker.io')),
      `Docker went past the mirror to Docker Hub: ${JSON.stringify(trapped.slice(trappedBefore))}`,
    );
  });
});
