import assert from 'node:assert/strict';
import { chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { peer, run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint } from '../helpers/secure-run.js';
import { cliForUser, ensureTestUser, TEST_USER, userDir } from '../helpers/unprivileged.js';

describe('secure-run as an unprivileged user (runuser): no root anywhere', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  let ids: { uid: number; gid: number };
  let cli: { cli: string; cleanup: () => void };
  let home: { path: string; cleanup: () => void };
  const sr = async (...args: string[]) => {
    const env = { PATH: process.env.PATH, HOME: home.path, XDG_CONFIG_HOME: join(home.path, 'config'), XDG_DATA_HOME: join(home.path, 'data') };
    const r = await run('runuser', ['-u', TEST_USER, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, cli.cli, ...args], { allowFail: true });
    return { status: r.code, stdout: r.stdout, stderr: r.stderr };
  };

  before(async () => {
    for (const p of ['runuser', 'useradd', 'crun', 'runc', 'bwrap']) peer(p);
    ids = await ensureTestUser();
    cli = await cliForUser();
    home = userDir(ids.uid, ids.gid);
    ({ world, gw, stop } = await startWorldGateway());
    const t = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(t.status, 0, t.stderr);
  });
  after(async () => {
    await stop();
    home?.cleanup();
    cli?.cleanup();
  });

  for (const runtime of ['crun', 'runc', 'bwrap']) {
    test(`${runtime}: an attested image runs, and what it writes belongs to the user on the host`, async () => {
      const vol = join(home.path, `vol-${runtime}`);
      mkdirSync(vol);
      chownSync(vol, ids.uid, ids.gid);
      const r = await sr('--runtime', runtime, '-v', `${vol}:/out`, `${world.registry.host}/test/signed:1`, '-c', 'cat /srv/hello.txt; id -u; touch /out/made; exit 4');
      assert.equal(r.status, 4, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['signed', '0']);
      assert.equal(statSync(join(vol, 'made')).uid, ids.uid);
    });
  }

  test('an image user other than root runs as the container root, with a warning', async () => {
    const r = await sr('-u', '1000', `${world.registry.host}/test/signed:1`, '-c', 'id -u');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0');
    assert.match(r.stderr, /warning/);
  });

  test('an unattested image is refused for the user too', async () => {
    const r = await sr(`${world.registry.host}/test/unsigned:1`);
    assert.equal(r.status, 125);
  });
});
