import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { run } from '../helpers/peers.js';
import { clientRequestsSince, startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The README's containerd set-up: a hosts.toml whose `server` is the gateway (so a
 * failure has nowhere else to fall back to) with the gateway as its `[host]`. A real
 * containerd (its own root, state and socket; no CRI) pulls with `ctr --hosts-dir`:
 * an admitted image pulls under its upstream name, a denied one fails, and the
 * upstream never hears from containerd. The form with the real registry as `server`
 * is shown to fall back to it on the gateway's 403.
 */
describe('containerd pulls only through the gateway when it is the server', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const dir = tempDir('portcullis-containerd-');
  const sock = join(dir.path, 'containerd.sock');
  let daemon: TestDaemon | undefined;

  const hostsDir = (toml: string) => {
    const d = join(dir.path, `certs.d-${Math.random().toString(36).slice(2)}`);
    mkdirSync(join(d, world.registry.host), { recursive: true });
    writeFileSync(join(d, world.registry.host, 'hosts.toml'), toml);
    return d;
  };
  const pull = (hosts: string, ref: string) =>
    run('ctr', ['--address', sock, '--namespace', 'portcullis-test', 'images', 'pull', '--hosts-dir', hosts, ref], {
      allowFail: true,
      timeoutMs: 60_000,
    });
  const onlyRoute = () =>
    [`server = "http://${gw.host}"`, '', `[host."http://${gw.host}"]`, '  capabilities = ["pull", "resolve"]', ''].join(
      '\n',
    );

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway({ accessLog: true }));
    const config = [
      'version = 2',
      `root = "${join(dir.path, 'root')}"`,
      `state = "${join(dir.path, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${sock}"`,
      '[ttrpc]',
      `  address = "${sock}.ttrpc"`,
      '[debug]',
      `  address = "${join(dir.path, 'debug.sock')}"`,
      '[metrics]',
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${join(dir.path, 'opt')}"`,
      '',
    ].join('\n');
    writeFileSync(join(dir.path, 'containerd.toml'), config);
    daemon = await startDaemon('containerd', ['--config', join(dir.path, 'containerd.toml')], {
      ready: async () =>
        (await run('ctr', ['--address', sock, 'version'], { allowFail: true, timeoutMs: 5000 })).code === 0,
    });
  });
  after(async () => {
    await daemon?.stop(8000);
    // Snapshots are mounted only while a container uses them: none were.
    dir.cleanup();
    await stop();
  });

  test('a signed image is pulled through the gateway by its upstream name', async () => {
    const mark = world.registry.requests().length;
    const r = await pull(hostsDir(onlyRoute()), `${world.registry.host}/test/signed:1`);
    assert.equal(r.code, 0, `${r.stderr}\n${daemon?.log() ?? ''}`);
    assert.ok(decisionLogs(gw).some((l) => l.digest === world.digests.signed && l.allowed === true));
    const listed = await run('ctr', ['--address', sock, '--namespace', 'portcullis-test', 'images', 'ls']);
    assert.match(listed.stdout, new RegExp(world.digests.signed));
    assert.deepEqual(clientRequestsSince(world, mark), []);
  });

  test('an unsigned image fails, and containerd does not go to the upstream instead', async () => {
    const mark = world.registry.requests().length;
    const r = await pull(hostsDir(onlyRoute()), `${world.registry.host}/test/unsigned:1`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /403|denied|forbidden/i);
    assert.deepEqual(clientRequestsSince(world, mark), []);
  });

  test('why not the registry as server: containerd falls back to it on the gateway 403', async () => {
    const mark = world.registry.requests().length;
    const r = await pull(
      hostsDir(
        [
          `server = "http://${world.registry.host}"`,
          '',
          `[host."http://${gw.host}"]`,
          '  capabilities = ["pull", "resolve"]',
          '',
        ].join('\n'),
      ),
      `${world.registry.host}/test/unsigned:1`,
    );
    assert.equal(r.code, 0, 'the fallback pulled the unsigned image');
    assert.notDeepEqual(clientRequestsSince(world, mark), []);
  });
});
