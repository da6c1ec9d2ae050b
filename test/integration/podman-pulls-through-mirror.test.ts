import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, type TestGateway } from '../helpers/gateway.js';
import { testPodman } from '../helpers/podman.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';

describe('podman pulls through the gateway configured as a registries.conf mirror', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
  });
  after(async () => {
    await stop();
  });

  test('a signed image pulled by its upstream name is served by the mirror', async () => {
    const podman = testPodman(
      [
        '[[registry]]',
        `prefix = "${world.registry.host}"`,
        `location = "${world.registry.host}"`,
        '[[registry.mirror]]',
        `location = "${gw.host}/up"`,
        'insecure = true',
        '',
      ].join('\n'),
    );
    try {
      const r = await podman.pull(`${world.registry.host}/test/signed:1`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await podman.digestOf(`${world.registry.host}/test/signed:1`), world.digests.signed);
      assert.ok(decisionLogs(gw).some((l) => l.digest === world.digests.signed && l.allowed === true));
    } finally {
      podman.cleanup();
    }
  });

  test('an unsigned image is refused when the gateway is the only location', async () => {
    const podman = testPodman(
      ['[[registry]]', `prefix = "${world.registry.host}"`, `location = "${gw.host}/up"`, 'insecure = true', ''].join(
        '\n',
      ),
    );
    try {
      const r = await podman.pull(`${world.registry.host}/test/unsigned:1`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /denied/i);
    } finally {
      podman.cleanup();
    }
  });
});
