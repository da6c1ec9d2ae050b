import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * retention.rules[].maxBytes: when what a scope's admissions hold (each blob once) is
 * over its budget, `portcullis gc` retires the least recently pulled until the rest
 * fits; a pinned digest is never retired (the report says when pins alone keep a scope
 * over); what only the retired used is deleted, what the kept use stays.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
type Report = {
  retired: { repository: string; digest: string }[];
  deleted: { digest: string }[];
  budgets: { scope: string; maxBytes: number; before: number; after: number; overByPins: boolean }[];
};

describe('portcullis gc keeps a scope within its size budget', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const out = tempDir('portcullis-gc-budget-');
  const config = () => join(gw.dir, 'config.yaml');
  let baseConfig = '';
  const gc = async (maxBytes: number, ...args: string[]) => {
    writeFileSync(
      config(),
      baseConfig.replace(
        'retention: {}',
        `retention:\n  rules:\n    - { scope: "${world.registry.host}/test", maxBytes: ${maxBytes} }`,
      ),
    );
    const r = await run(process.execPath, ['--', CLI, 'gc', '--config', config(), ...args, '--json'], {
      allowFail: true,
    });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Report;
  };

  before(async () => {
    world = await buildSignedWorld();
    gw = await gatewayForWorld(world, { extraConfig: 'retention: {}' });
    baseConfig = readFileSync(config(), 'utf8');
    for (const name of ['signed', 'docker', 'multi'])
      await run('skopeo', [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/test/${name}:1`,
        `dir:${join(out.path, name)}`,
      ]);
    // Pulled long ago, less long ago, lately; every file older than the grace period.
    const db = new Database(join(gw.dataDir, 'metadata.db'));
    const day = 24 * 60 * 60 * 1000;
    const at = { signed: Date.now() - 30 * day, docker: Date.now() - 20 * day, multi: Date.now() - day };
    for (const [name, t] of Object.entries(at))
      db.prepare(
        'UPDATE manifests SET last_pulled_at = ? WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)',
      ).run(t, `${world.registry.host}/test/${name}`);
    db.close();
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
      );
    for (const f of walk(join(gw.dataDir, 'store', 'blobs')))
      utimesSync(f, Date.now() / 1000 - 7200, Date.now() / 1000 - 7200);
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    out.cleanup();
  });
  const blob = (digest: string) => join(gw.dataDir, 'store', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

  test('within the budget nothing goes; one byte under it, the least recently pulled goes first', async () => {
    const all = await gc(Number.MAX_SAFE_INTEGER, '--dry-run');
    assert.deepEqual(all.retired, []);
    const held = all.budgets[0]?.before ?? 0;
    assert.ok(held > 0);
    assert.equal(all.budgets[0]?.after, held);

    const tight = await gc(held - 1, '--dry-run');
    assert.deepEqual(
      tight.retired.map((r) => r.digest),
      [world.digests.signed],
      'the image pulled longest ago, and only it',
    );
    assert.ok((tight.budgets[0]?.after ?? held) <= held - 1);
    assert.ok(existsSync(blob(world.digests.signed)), 'a dry run withdraws nothing');
  });

  test('pins are never retired: a budget they alone exceed is reported; the run deletes what only the retired used', async () => {
    const db = new Database(join(gw.dataDir, 'metadata.db'));
    db.prepare(
      `INSERT INTO pins (repository_id, tag, digest, pinned_at) SELECT id, '1', ?, 0 FROM repositories WHERE name = ?`,
    ).run(world.digests.multi, `${world.registry.host}/test/multi`);
    db.close();
    const r = await gc(1);
    assert.deepEqual(r.retired.map((x) => x.digest).sort(), [world.digests.docker, world.digests.signed].sort());
    assert.equal(r.budgets[0]?.overByPins, true);
    assert.ok(r.deleted.some((b) => b.digest === world.digests.signed));
    assert.ok(!existsSync(blob(world.digests.signed)) && !existsSync(blob(world.digests.docker)));
    assert.ok(existsSync(blob(world.digests.multi)), 'the pinned index stays');
    const again = await gc(1, '--dry-run');
    assert.deepEqual(again.retired, []);
    assert.equal(again.budgets[0]?.before, again.budgets[0]?.after);
  });
});
