import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { TestGateway } from '../helpers/gateway.js';
import { sha256 } from '../helpers/layers.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `portcullis gc` beside a running gateway: an unused blob older than the grace period
 * goes, a younger one stays, a dry run changes nothing, every blob an admission uses
 * stays; an admission not pulled for longer than its scope's unpulledDays is retired,
 * its blobs go once older than the grace period, and the next pull decides and fetches
 * the image afresh.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
const gc = async (...args: string[]) => {
  const r = await run(process.execPath, ['--', CLI, 'gc', ...args, '--json'], { allowFail: true });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    retired: { repository: string; digest: string }[];
    deleted: { digest: string }[];
    inGrace: number;
  };
};

describe('portcullis gc', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-gc-');
  before(async () => {
    world = await buildSignedWorld();
    gw = await gatewayForWorld(world, {
      extraConfig: [
        'retention:',
        '  graceMinutes: 60',
        '  rules:',
        `    - { scope: "${world.registry.host}/test", unpulledDays: 7 }`,
      ].join('\n'),
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    out.cleanup();
  });

  const blobPath = (digest: string) =>
    join(gw.dataDir, 'store', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
  const stray = (ageMs: number) => {
    const bytes = randomBytes(1000);
    const digest = sha256(bytes);
    mkdirSync(join(blobPath(digest), '..'), { recursive: true });
    writeFileSync(blobPath(digest), bytes);
    const t = (Date.now() - ageMs) / 1000;
    utimesSync(blobPath(digest), t, t);
    return digest;
  };
  const allBlobFiles = (): string[] => {
    const root = join(gw.dataDir, 'store', 'blobs');
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true }))
        if (e.isDirectory()) walk(join(d, e.name));
        else files.push(join(d, e.name));
    };
    walk(root);
    return files;
  };
  const pull = (dest: string) =>
    run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${gw.host}/up/test/signed:1`,
      `dir:${join(out.path, dest)}`,
    ]);

  test('unused blobs past the grace period go, used and young ones stay; a dry run changes nothing', async () => {
    assert.equal((await pull('first')).code, 0);
    const used = allBlobFiles();
    const old = stray(2 * 60 * 60 * 1000);
    const young = stray(60 * 1000);
    const config = join(gw.dir, 'config.yaml');
    const dry = await gc('--config', config, '--dry-run');
    assert.deepEqual(
      dry.deleted.map((b) => b.digest),
      [old],
    );
    assert.ok(existsSync(blobPath(old)), 'a dry run deletes nothing');
    const real = await gc('--config', config);
    assert.deepEqual(real.retired, []);
    assert.deepEqual(
      real.deleted.map((b) => b.digest),
      [old],
    );
    assert.equal(real.inGrace, 1);
    assert.ok(!existsSync(blobPath(old)) && existsSync(blobPath(young)));
    for (const f of used) assert.ok(existsSync(f), `${f} is used and stays`);
  });

  test('an admission not pulled for longer than unpulledDays is retired, its blobs go, and the next pull heals it', async () => {
    const config = join(gw.dir, 'config.yaml');
    // Eight days on, as far as the metadata and the files can tell.
    const db = new Database(join(gw.dataDir, 'metadata.db'));
    const eightDaysAgo = Date.now() - 8 * 24 * 60 * 60 * 1000;
    db.prepare('UPDATE manifests SET last_pulled_at = ?, admitted_at = ?').run(eightDaysAgo, eightDaysAgo);
    db.close();
    for (const f of allBlobFiles()) utimesSync(f, eightDaysAgo / 1000, eightDaysAgo / 1000);
    const first = await gc('--config', config);
    assert.ok(first.retired.some((r) => r.digest === world.digests.signed));
    assert.ok(!existsSync(blobPath(world.digests.signed)), 'the manifest bytes went with it');
    const left = allBlobFiles().filter((f) => Date.now() - statSync(f).mtimeMs > 60 * 60 * 1000);
    assert.deepEqual(left, [], 'every blob only the retired image used is gone');
    assert.equal((await pull('second')).code, 0);
    assert.deepEqual(
      readFileSync(join(out.path, 'second', 'manifest.json')),
      readFileSync(join(out.path, 'first', 'manifest.json')),
    );
  });
});
