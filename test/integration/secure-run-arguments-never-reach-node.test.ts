import assert from 'node:assert/strict';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestGateway } from '../helpers/gateway.js';
import { startWorldGateway, type SignedWorld } from '../helpers/signed-world.js';
import { gatewayFingerprint, secureRunHome } from '../helpers/secure-run.js';

/**
 * Node 20 reads `--env-file` from anywhere on its own command line: none of
 * secure-run's arguments may get there. `--env-file F` is secure-run's option (the
 * container's environment), a NODE_OPTIONS line in F runs nothing in the launcher,
 * a missing F is secure-run's own error, and a container command may take
 * `--env-file` itself.
 */
describe("secure-run's arguments never reach Node's option parser", () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const { home, sr } = secureRunHome();
  const marker = () => join(home.path, 'injected');
  let image: string;

  before(async () => {
    chmodSync(home.path, 0o711);
    ({ world, gw, stop } = await startWorldGateway());
    image = `${world.registry.host}/test/signed:1`;
    const t = await sr('trust', gw.url, '--fingerprint', await gatewayFingerprint(gw.url));
    assert.equal(t.status, 0, t.stderr);
    writeFileSync(
      join(home.path, 'inject.cjs'),
      `require('node:fs').writeFileSync(${JSON.stringify(marker())}, 'ran')\n`,
    );
    writeFileSync(
      join(home.path, 'env'),
      `NODE_OPTIONS=--require=${join(home.path, 'inject.cjs')}\nGREETING=from-the-file\n`,
    );
  });
  after(async () => {
    await stop();
    home.cleanup();
  });

  test('--env-file F sets the container environment and runs nothing from F in the launcher', async () => {
    for (const form of [['--env-file', join(home.path, 'env')], [`--env-file=${join(home.path, 'env')}`]]) {
      const r = await sr(...form, image, '-c', 'echo $GREETING');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'from-the-file\n');
      assert.equal(existsSync(marker()), false, 'NODE_OPTIONS from the file ran inside secure-run');
    }
  });

  test("a missing --env-file is secure-run's own refusal, not Node's exit 9", async () => {
    const r = await sr('--env-file', join(home.path, 'no-such-file'), image, '-c', 'true');
    assert.equal(r.status, 125, r.stderr);
    assert.match(r.stderr, /^secure-run: .*no-such-file.*\[OPTION_INVALID\]/m);
  });

  test('a container command that takes --env-file gets it', async () => {
    const r = await sr('--entrypoint', '', image, '/bin/echo', '--env-file', join(home.path, 'env'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `--env-file ${join(home.path, 'env')}\n`);
    assert.equal(existsSync(marker()), false);
  });
});
