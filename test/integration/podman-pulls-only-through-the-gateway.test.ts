import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { testPodman } from '../helpers/podman.js';
import { clientRequestsSince, startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';

/**
 * The README's podman set-up: the gateway as the registry's only `location`, no mirror.
 * An admitted image pulls under its own name, a denied one fails, and podman never
 * talks to the upstream itself. The mirror form is shown to fall back to the
 * upstream on the gateway's 403 — which is why the README does not offer it.
 */
describe('podman pulls only through the gateway when it is the one location', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const onlyRoute = () =>
    ['[[registry]]', `prefix = "${world.registry.host}"`, `location = "${gw.host}/up"`, 'insecure = true', ''].join(
      '\n',
    );

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway({ accessLog: true }));
  });
  after(async () => {
    await stop();
  });

  test('a signed image pulled by its upstream name is served by the gateway', async () => {
    const podman = testPodman(onlyRoute());
    const mark = world.registry.requests().length;
    try {
      const r = await podman.pull(`${world.registry.host}/test/signed:1`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await podman.digestOf(`${world.registry.host}/test/signed:1`), world.digests.signed);
      assert.ok(decisionLogs(gw).some((l) => l.digest === world.digests.signed && l.allowed === true));
      assert.deepEqual(clientRequestsSince(world, mark), []);
    } finally {
      podman.cleanup();
    }
  });

  test('an unsigned image is refused, and podman does not go to the upstream instead', async () => {
    const podman = testPodman(onlyRoute());
    const mark = world.registry.requests().length;
    try {
      const r = await podman.pull(`${world.registry.host}/test/unsigned:1`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /denied/i);
      assert.deepEqual(clientRequestsSince(world, mark), []);
    } finally {
      podman.cleanup();
    }
  });

  test('why not a mirror: with the gateway as a mirror, podman takes a denied image from the upstream', async () => {
    const podman = testPodman(
      [
        '[[registry]]',
        `prefix = "${world.registry.host}"`,
        `location = "${world.registry.host}"`,
        'insecure = true',
        '[[registry.mirror]]',
        `location = "${gw.host}/up"`,
        'insecure = true',
        '',
      ].join('\n'),
    );
    const mark = world.registry.requests().length;
    try {
      const r = await podman.pull(`${world.registry.host}/test/unsigned:1`);
      assert.equal(r.code, 0, 'the fallback pulled the unsigned image');
      assert.notDeepEqual(clientRequestsSince(world, mark), []);
    } finally {
      podman.cleanup();
    }
  });
});
