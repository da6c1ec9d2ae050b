import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { subRange } from '../../runner/host.js';
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
    const env = {
      PATH: process.env.PATH,
      HOME: home.path,
      XDG_CONFIG_HOME: join(home.path, 'config'),
      XDG_DATA_HOME: join(home.path, 'data'),
    };
    const r = await run(
      'runuser',
      [
        '-u',
        TEST_USER,
        '--',
        'env',
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        '--',
        cli.cli,
        ...args,
      ],
      { allowFail: true },
    );
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
      const r = await sr(
        '--runtime',
        runtime,
        '-v',
        `${vol}:/out`,
        `${world.registry.host}/test/signed:1`,
        '-c',
        'cat /srv/hello.txt; id -u; touch /out/made; exit 4',
      );
      assert.equal(r.status, 4, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['signed', '0']);
      assert.equal(statSync(join(vol, 'made')).uid, ids.uid);
    });
  }

  for (const runtime of ['crun', 'runc']) {
    test(`${runtime}: with a subordinate id range, image users and file owners are kept, on ids of that range`, async () => {
      const range = subRange(readFileSync('/etc/subuid', 'utf8'), ids.uid, TEST_USER);
      assert.ok(range && range.count >= 1000, `useradd gives ${TEST_USER} a subordinate id range`);
      const vol = join(home.path, `vol-subids-${runtime}`);
      mkdirSync(vol);
      chmodSync(vol, 0o777);
      const r = await sr(
        '--runtime',
        runtime,
        '-u',
        '1000',
        '-v',
        `${vol}:/out`,
        `${world.registry.host}/test/signed:1`,
        '-c',
        'id -u; cat /srv/owned-by-1000; touch /out/made',
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['1000', 'mine']);
      assert.doesNotMatch(r.stderr, /warning/);
      assert.equal(statSync(join(vol, 'made')).uid, range.start + 999, "container uid 1000 is the range's 1000th id");
    });
  }

  test('--userns single: an image user other than root runs as the container root, with a warning', async () => {
    const r = await sr(
      '--userns',
      'single',
      '-u',
      '1000',
      `${world.registry.host}/test/signed:1`,
      '-c',
      'id -u; cat /srv/owned-by-1000',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['0', 'mine']);
    assert.match(r.stderr, /warning/);
  });

  test('the cached tree of a subordinate-id run is reused, and its files cannot be changed from outside', async () => {
    const data = join(home.path, 'data', 'secure-run', 'rootfs');
    const before = readdirSync(data).filter((n) => !n.startsWith('.'));
    const tree = before.find((n) => /-0x\d+-u\d+g\d+$/.test(n));
    assert.ok(tree, 'a tree unpacked with the range');
    const stamp = () => {
      const st = statSync(join(data, tree, 'rootfs', 'srv', 'hello.txt'), { bigint: true });
      return `${st.ino}:${st.ctimeNs}`;
    };
    const inode = stamp();
    const r = await sr(`${world.registry.host}/test/signed:1`, '-c', 'true');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      readdirSync(data).filter((n) => !n.startsWith('.')),
      before,
      'no new tree',
    );
    assert.equal(stamp(), inode, 'the same tree, not unpacked again');
    const owned = join(data, tree, 'rootfs', 'srv', 'owned-by-1000');
    const w = await run('runuser', ['-u', TEST_USER, '--', 'sh', '-c', `echo x >> ${owned}`], { allowFail: true });
    assert.notEqual(w.code, 0, "a file of another container id is not the user's to write");
  });

  test('an unattested image is refused for the user too', async () => {
    const r = await sr(`${world.registry.host}/test/unsigned:1`);
    assert.equal(r.status, 125);
  });
});
