import assert from 'node:assert/strict';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT_DATA_DIR } from '../../runner/settings.js';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, SECURE_RUN_CLI } from '../helpers/secure-run.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `sudo secure-run …` with root's own 0700 home and no XDG variables: the defaults
 * work (root's data lives in /var/lib/secure-run, where the containers' unprivileged
 * ids can reach it), and a data directory they cannot reach is refused up front and
 * reported by `doctor`.
 */
describe('secure-run as root with a private (0700) home', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const home = tempDir('portcullis-roothome-');
  const hadRootData = existsSync(ROOT_DATA_DIR);
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, HOME: home.path, ...extra };
    delete e.XDG_CONFIG_HOME;
    if (extra.XDG_DATA_HOME === undefined) delete e.XDG_DATA_HOME;
    return e;
  };
  const sr = (e: NodeJS.ProcessEnv, ...args: string[]) => run(SECURE_RUN_CLI, args, { env: e, allowFail: true });

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test runs as root (as CI does)');
    chmodSync(home.path, 0o700);
    ({ world, gw, stop } = await startWorldGateway());
    const t = await sr(env(), 'trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(t.code, 0, t.stderr);
  });
  after(async () => {
    await stop();
    home.cleanup();
    if (!hadRootData) rmSync(ROOT_DATA_DIR, { recursive: true, force: true });
  });

  test('the defaults start an image', async () => {
    const r = await sr(env(), `${world.registry.host}/test/signed:1`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'signed\n');
    assert.ok(existsSync(join(ROOT_DATA_DIR, 'images')), "root's data is in /var/lib/secure-run");
    const doctor = await sr(env(), 'doctor', '--json');
    const f = (JSON.parse(doctor.stdout) as { check: string; status: string }[]).find(
      (x) => x.check === 'data directory',
    );
    assert.equal(f?.status, 'ok');
  });

  test('a data directory under the 0700 home is refused before anything runs, and doctor says why', async () => {
    const inside = env({ XDG_DATA_HOME: join(home.path, 'data') });
    const r = await sr(inside, `${world.registry.host}/test/signed:1`);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /\[DATA_DIR_UNREACHABLE\]/);
    const doctor = await sr(inside, 'doctor');
    assert.equal(doctor.code, 1);
    assert.match(doctor.stdout, /FAIL {2}data directory: .*mode 700/);
  });
});
