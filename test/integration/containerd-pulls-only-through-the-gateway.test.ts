import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { startContainerd, type TestEngine } from '../helpers/engines.js';
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
  let engine: TestEngine | undefined;

  const hostsDir = (toml: string) => {
    const d = join(dir.path, `certs.d-${Math.random().toString(36).slice(2)}`);
    mkdirSync(join(d, world.registry.host), { recursive: true });
    writeFileSync(join(d, world.registry.host, 'hosts.toml'), toml);
    return d;
  };
  const pull = (hosts: string, ref: string) =>
    (engine as TestEngine).cli(['images', 'pull', '--hosts-dir', hosts, ref]);
  const onlyRoute = () =>
    [`server = "http://${gw.host}"`, '', `[host."http://${gw.host}"]`, '  capabilities = ["pull", "resolve"]', ''].join(
      '\n',
    );

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway({ accessLog: true }));
    engine = await startContainerd(dir.path);
  });
  after(async () => {
    await engine?.stop();
    dir.cleanup();
    await stop();
  });

  test('a signed image is pulled through the gateway by its upstream name', async () => {
    const mark = world.registry.requests().length;
    const r = await pull(hostsDir(onlyRoute()), `${world.registry.host}/test/signed:1`);
    assert.equal(r.code, 0, `${r.stderr}\n${engine?.log() ?? ''}`);
    assert.ok(decisionLogs(gw).some((l) => l.digest === world.digests.signed && l.allowed === true));
    const listed = await (engine as TestEngine).cli(['images', 'ls']);
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
