import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT_ID_BASE } from '../../runner/host.js';
import type { TestGateway } from '../helpers/gateway.js';
import { peer, run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';

describe('secure-run launches attested images (as root: in a dedicated unprivileged id range)', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, sr } = secureRunHome();

  before(async () => {
    for (const p of ['crun', 'runc', 'bwrap', 'tini-static', 'unshare', 'nsenter', 'setpriv']) peer(p);
    // The container's root (an unprivileged host id) must be able to reach its bundle.
    chmodSync(home.path, 0o711);
    ({ world, gw, stop } = await startWorldGateway());
    const t = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(t.status, 0, t.stderr);
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  for (const runtime of ['crun', 'runc', 'bwrap']) {
    test(`${runtime}: the image's own command runs and its output and exit code come back`, async () => {
      const r = await sr('--runtime', runtime, `${world.registry.host}/test/signed:1`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'signed\n');
      const code = await sr(
        '--runtime',
        runtime,
        '--entrypoint',
        '',
        `${world.registry.host}/test/signed:1`,
        '/bin/sh',
        '-c',
        'exit 7',
      );
      assert.equal(code.status, 7, code.stderr);
    });
  }

  test('env, workdir, user, and the id mapping', async () => {
    const r = await sr(
      '-e',
      'FOO=bar',
      '-w',
      '/srv',
      '-u',
      '1000:1000',
      `${world.registry.host}/test/signed:1`,
      '-c',
      'echo $FOO; pwd; id -u; id -g; cat /proc/self/uid_map',
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.slice(0, 4), ['bar', '/srv', '1000', '1000']);
    assert.deepEqual(lines[4]?.trim().split(/\s+/), ['0', String(ROOT_ID_BASE), '65536']);
  });

  for (const runtime of ['crun', 'runc', 'bwrap']) {
    test(`${runtime}: read-only root and a read-only volume, submounts included; /tmp is writable`, async () => {
      const vol = join(home.path, `vol-${runtime}`);
      mkdirSync(join(vol, 'sub'), { recursive: true });
      chmodSync(vol, 0o777);
      chmodSync(join(vol, 'sub'), 0o777);
      writeFileSync(join(vol, 'f'), 'from the host\n', { mode: 0o644 });
      // A mount below the volume: a plain bind `ro` would leave it writable.
      await run('mount', ['-t', 'tmpfs', '-o', 'mode=0777', 'tmpfs', join(vol, 'sub')]);
      try {
        const r = await sr(
          '--runtime',
          runtime,
          '-v',
          `${vol}:/data:ro`,
          `${world.registry.host}/test/signed:1`,
          '-c',
          'cat /data/f; touch /tmp/ok && echo tmp-ok; touch /data/x || echo vol-ro; touch /data/sub/x || echo sub-ro; touch /etc/x || echo root-ro',
        );
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(r.stdout.trim().split('\n'), ['from the host', 'tmp-ok', 'vol-ro', 'sub-ro', 'root-ro']);
        assert.equal(existsSync(join(vol, 'x')), false);
      } finally {
        await run('umount', [join(vol, 'sub')]);
      }
    });
  }

  test('a cached rootfs that was changed after unpacking is never used: it is unpacked again', async () => {
    const rootfsDir = join(home.path, 'data', 'secure-run', 'rootfs');
    // Inode and change time: a tree unpacked again may reuse freed inode numbers, never the change time.
    const inodes = () =>
      readdirSync(rootfsDir)
        .filter((d) => !d.startsWith('.'))
        .map((e) => {
          const st = statSync(join(rootfsDir, e, 'rootfs', 'srv', 'hello.txt'), { bigint: true });
          return `${st.ino}:${st.ctimeNs}`;
        });
    const unchanged = inodes();
    assert.equal((await sr(`${world.registry.host}/test/signed:1`)).status, 0);
    assert.deepEqual(inodes(), unchanged, 'an unchanged tree is used as it is');
    for (const entry of readdirSync(rootfsDir).filter((d) => !d.startsWith('.'))) {
      const file = join(rootfsDir, entry, 'rootfs', 'srv', 'hello.txt');
      if (existsSync(file)) writeFileSync(file, 'tampered\n');
    }
    const r = await sr(`${world.registry.host}/test/signed:1`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'signed\n');
    assert.notDeepEqual(inodes(), unchanged, 'the changed tree was unpacked again');
  });

  test('an unsigned image is refused before anything is unpacked or launched', async () => {
    const rootfsDir = join(home.path, 'data', 'secure-run', 'rootfs');
    const before = existsSync(rootfsDir) ? readdirSync(rootfsDir).sort() : [];
    const r = await sr(`${world.registry.host}/test/unsigned:1`);
    assert.equal(r.status, 125);
    // The gateway's own words: its reason code and its message.
    assert.match(r.stderr, /the gateway denied .*test\/unsigned:1: .*denied by policy/);
    assert.match(r.stderr, /\[IMAGE_DENIED signature\.missing\]/);
    assert.deepEqual(existsSync(rootfsDir) ? readdirSync(rootfsDir).sort() : [], before);
    const containers = join(home.path, 'data', 'secure-run', 'containers');
    assert.deepEqual(existsSync(containers) ? readdirSync(containers) : [], []);
  });
});
