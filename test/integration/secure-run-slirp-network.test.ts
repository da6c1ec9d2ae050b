import assert from 'node:assert/strict';
import { chmodSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { peer, run } from '../helpers/peers.js';
import { waitFor } from '../helpers/ports.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';
import { cliForUser, ensureTestUser, TEST_USER, userDir } from '../helpers/unprivileged.js';

/**
 * --network slirp: the container gets a user-mode network stack. The only address a
 * container here ever contacts is 10.0.2.2, which slirp4netns maps to this host's
 * 127.0.0.1 when allowed, where the test's own HTTP server listens.
 */
describe('secure-run --network slirp: user-mode networking, host loopback only when asked', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  let server: Server;
  let port = 0;
  let hits = 0;
  const { home, sr } = secureRunHome();
  const image = () => `${world.registry.host}/test/signed:1`;
  const fetchHost = () =>
    `/bin/busybox timeout 5 /bin/busybox wget -q -O- http://10.0.2.2:${port}/ && echo fetched || echo unreachable`;

  before(async () => {
    for (const p of ['crun', 'runc', 'bwrap', 'slirp4netns', 'runuser']) peer(p);
    chmodSync(home.path, 0o711);
    server = createServer((_req, res) => {
      hits++;
      res.end('hello from the host\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    ({ world, gw, stop } = await startWorldGateway());
    const t = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(t.status, 0, t.stderr);
  });
  after(async () => {
    await stop();
    await new Promise((resolve) => server.close(resolve));
    home.cleanup();
  });

  for (const runtime of ['crun', 'runc', 'bwrap']) {
    test(`${runtime}: with allow_host_loopback the container reaches the host's 127.0.0.1 at 10.0.2.2, and has DNS settings`, async () => {
      const before = hits;
      const r = await sr(
        '--runtime',
        runtime,
        '--network',
        'slirp:allow_host_loopback=true',
        image(),
        '-c',
        `${fetchHost()}; cat /etc/resolv.conf; grep -c tap0 /proc/net/dev`,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['hello from the host', 'fetched', 'nameserver 10.0.2.3', '1']);
      assert.equal(hits, before + 1);
    });
  }

  test("plain slirp keeps the host's loopback closed; none has no interface but loopback", async () => {
    const before = hits;
    const slirp = await sr('--network', 'slirp', image(), '-c', `${fetchHost()}; grep -c tap0 /proc/net/dev`);
    assert.equal(slirp.status, 0, slirp.stderr);
    assert.deepEqual(slirp.stdout.trim().split('\n'), ['unreachable', '1']);
    const none = await sr('--network', 'none', image(), '-c', `${fetchHost()}; grep -c tap0 /proc/net/dev`);
    assert.deepEqual(none.stdout.trim().split('\n'), ['unreachable', '0']);
    assert.equal(hits, before, 'no request reached the host');
    // Killed as secure-run ends; give the kernel a moment to reap it.
    await waitFor(
      async () => (await run('pgrep', ['-x', 'slirp4netns'], { allowFail: true })).stdout.trim() === '',
      'no slirp4netns to be left behind',
      5000,
    );
  });

  test('an unknown network mode or option is refused before anything runs', async () => {
    for (const mode of ['host', 'slirp:allow_host_loopback=yes', 'bridge']) {
      const r = await sr('--network', mode, image(), '-c', 'true');
      assert.equal(r.status, 125, mode);
      assert.match(r.stderr, /\[IMAGE_INVALID\]/);
    }
  });

  test('as an unprivileged user with subordinate ids (where /dev/net/tun is open to users, as on a laptop)', async () => {
    const ids = await ensureTestUser();
    const cli = await cliForUser();
    const userHome = userDir(ids.uid, ids.gid);
    // This machine keeps /dev/net/tun at 0600; a laptop has 0666. Opened for the test, then restored.
    const tunMode = statSync('/dev/net/tun').mode & 0o777;
    chmodSync('/dev/net/tun', 0o666);
    try {
      const env = [
        `HOME=${userHome.path}`,
        `XDG_CONFIG_HOME=${join(userHome.path, 'config')}`,
        `XDG_DATA_HOME=${join(userHome.path, 'data')}`,
        `PATH=${process.env.PATH ?? ''}`,
      ];
      const as = (...args: string[]) =>
        run('runuser', ['-u', TEST_USER, '--', 'env', ...env, process.execPath, '--', cli.cli, ...args], {
          allowFail: true,
        });
      const t = await as('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
      assert.equal(t.code, 0, t.stderr);
      const before = hits;
      const r = await as('--network', 'slirp:allow_host_loopback=true', image(), '-c', fetchHost());
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['hello from the host', 'fetched']);
      assert.equal(hits, before + 1);
    } finally {
      chmodSync('/dev/net/tun', tunMode);
      userHome.cleanup();
      cli.cleanup();
    }
  });
});
