import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `portcullis fsck` beside a running gateway: a clean store passes; a layer whose
 * bytes were flipped on disk is found, `--repair` removes it, and the next pull
 * fetches and verifies it again. Exit codes: 0 clean, 1 found.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
const cli = (...args: string[]) => run(process.execPath, ['--', CLI, ...args], { allowFail: true });

describe('portcullis fsck', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-fsck-');
  before(async () => {
    world = await buildSignedWorld();
    gw = await gatewayForWorld(world);
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    out.cleanup();
  });

  const pull = (dest: string) =>
    run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${gw.host}/up/test/signed:1`,
      `dir:${join(out.path, dest)}`,
    ]);

  test('a clean store passes, a flipped byte is found and repaired, and the next pull heals it', async () => {
    assert.equal((await pull('first')).code, 0);
    const config = join(gw.dir, 'config.yaml');
    const clean = await cli('fsck', '--config', config, '--json');
    assert.equal(clean.code, 0, clean.stderr);
    const report = JSON.parse(clean.stdout) as { blobs: number; manifests: number; findings: unknown[] };
    assert.ok(report.blobs >= 3 && report.manifests >= 1);
    assert.deepEqual(report.findings, []);

    const manifest = JSON.parse(readFileSync(join(out.path, 'first', 'manifest.json'), 'utf8')) as {
      layers: { digest: string }[];
    };
    const layer = manifest.layers[0]?.digest.slice(7) as string;
    const file = join(gw.dataDir, 'store', 'blobs', 'sha256', layer.slice(0, 2), layer);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0xff;
    writeFileSync(file, bytes);

    const found = await cli('fsck', '--config', config);
    assert.equal(found.code, 1);
    assert.match(found.stdout, new RegExp(`^blob\\.corrupt  sha256:${layer}`, 'm'));
    const repaired = await cli('fsck', '--config', config, '--repair', '--json');
    assert.equal(repaired.code, 1);
    const r = JSON.parse(repaired.stdout) as {
      findings: { kind: string; digest: string; detail: string; repaired: boolean }[];
    };
    assert.deepEqual(r.findings, [
      { kind: 'blob.corrupt', digest: `sha256:${layer}`, detail: r.findings[0]?.detail, repaired: true },
    ]);
    assert.equal((await cli('fsck', '--config', config)).code, 0);
    assert.equal((await pull('second')).code, 0);
    assert.deepEqual(readFileSync(join(out.path, 'second', layer)), readFileSync(join(out.path, 'first', layer)));
  });

  test('a config whose gateway never ran is refused with a sentence', async () => {
    const dir = tempDir('portcullis-fsck-none-');
    try {
      writeFileSync(join(dir.path, 'config.yaml'), 'dataDir: data\nupstreams: []\n');
      const res = await cli('fsck', '--config', join(dir.path, 'config.yaml'));
      assert.equal(res.code, 2);
      assert.equal(res.stderr.trim().split('\n').length, 1, 'one sentence, no stack');
      assert.ok(res.stderr.startsWith('portcullis fsck: '));
    } finally {
      dir.cleanup();
    }
  });
});
