import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

/**
 * /readyz: 200 while the database (a real PostgreSQL) and the store answer, with each
 * upstream's state reported — a dead upstream does not make the gateway unready — and
 * 503 once the database is gone; /healthz (liveness) stays 200 throughout.
 */
describe('readiness', () => {
  let pg: TestPostgres;
  let registry: TestRegistry;
  let gw: TestGateway;
  before(async () => {
    [pg, registry] = await Promise.all([startPostgres(), startRegistry()]);
    const db = await pg.createDatabase();
    const dead = await freePort();
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
        `  - { name: "127.0.0.1:${dead}", url: "http://127.0.0.1:${dead}", prefix: dead }`,
      ].join('\n'),
      policy: acceptAnythingPolicy(),
      files: { 'pg-password': `${pg.password}\n` },
      extraConfig: `metadata:\n  driver: postgres\n  url: ${db.url}\n  passwordFile: pg-password`,
    });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([pg?.stop(), registry?.stop()]);
  });

  type Body = {
    status: string;
    checks: { database: { ok: boolean }; storage: { ok: boolean }; upstreams: Record<string, { ok: boolean }> };
  };
  const readyz = async () => {
    const res = await fetch(`${gw.url}/readyz`);
    return { status: res.status, body: (await res.json()) as Body };
  };

  test('ready with the database and store up; a dead upstream is reported, not fatal; unready without the database', async () => {
    const up = await readyz();
    assert.equal(up.status, 200);
    assert.equal(up.body.status, 'ready');
    assert.equal(up.body.checks.database.ok, true);
    assert.equal(up.body.checks.storage.ok, true);
    const upstreams = Object.entries(up.body.checks.upstreams).map(([name, c]) => [name === registry.host, c.ok]);
    assert.deepEqual(upstreams.sort(), [
      [false, false],
      [true, true],
    ]);

    await pg.stop();
    await new Promise((r) => setTimeout(r, 1100)); // past the second a probe is reused for
    const down = await readyz();
    assert.equal(down.status, 503);
    assert.equal(down.body.status, 'unready');
    assert.equal(down.body.checks.database.ok, false);
    assert.equal(down.body.checks.storage.ok, true);
    assert.ok(!JSON.stringify(down.body).includes(pg.password), 'no secret in the report');
    const live = await fetch(`${gw.url}/healthz`);
    assert.equal(live.status, 200);
    await live.arrayBuffer();
  });
});
