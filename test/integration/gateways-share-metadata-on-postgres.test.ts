import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Two gateways, each with its own blob store, sharing their metadata in one real
 * PostgreSQL: skopeo pulls a signed image through one, the other knows it was
 * admitted (and still fetches and verifies the bytes it lacks itself), an unsigned
 * one is denied by both, and `policy explain` and `tags` read the shared decisions
 * through either config. The password reaches the gateway by file and never the log.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
const cli = (...args: string[]) => run(process.execPath, ['--', CLI, ...args], { allowFail: true });
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('gateways share admissions and decisions on PostgreSQL', () => {
  let world: SignedWorld;
  let pg: TestPostgres;
  const gateways: TestGateway[] = [];
  const out = tempDir('portcullis-pg-pull-');

  before(async () => {
    [world, pg] = await Promise.all([buildSignedWorld(), startPostgres()]);
  });
  after(async () => {
    for (const g of gateways) await g.stop();
    await pg?.stop();
    await world?.stop();
    out.cleanup();
  });

  const start = async (url: string) => {
    const gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
      policy: worldPolicy(world.registry.host),
      files: { 'trusted.pub': readFileSync(world.trusted.pub), 'pg-password': `${pg.password}\n` },
      extraConfig: `metadata:\n  driver: postgres\n  url: ${url}\n  passwordFile: pg-password\n  poolSize: 4`,
    });
    gateways.push(gw);
    return gw;
  };

  test('an admission made through one gateway is known to the other; denials are shared too', async () => {
    const db = await pg.createDatabase();
    const [a, b] = await Promise.all([start(db.url), start(db.url)]);
    const copy = await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${a.host}/up/test/signed:1`,
      `dir:${join(out.path, 'signed')}`,
    ]);
    assert.equal(copy.code, 0);
    // b has not decided it, and has none of its bytes: it finds the admission in the shared store.
    const m = await fetch(`${b.url}/v2/up/test/signed/manifests/${world.digests.signed}`, { headers: { accept: OCI } });
    assert.equal(m.status, 200);
    const layer = ((await m.json()) as { layers: { digest: string }[] }).layers[0]?.digest as string;
    const blob = await fetch(`${b.url}/v2/up/test/signed/blobs/${layer}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
    assert.equal(
      decisionLogs(b).filter((l) => l.digest === world.digests.signed).length,
      0,
      'b served it on the admission a made, without deciding again',
    );
    const denied = await fetch(`${a.url}/v2/up/test/unsigned/manifests/1`, { headers: { accept: OCI } });
    assert.equal(denied.status, 403);
    await denied.arrayBuffer();
    // Either gateway's config explains the decisions both made.
    const explain = await cli(
      'policy',
      'explain',
      '--config',
      join(b.dir, 'config.yaml'),
      '--json',
      world.digests.unsigned,
    );
    assert.equal(explain.code, 0, explain.stderr);
    const records = JSON.parse(explain.stdout) as { allowed: boolean; reasons: { code: string }[] }[];
    assert.equal(records[0]?.allowed, false);
    assert.equal(records[0]?.reasons[0]?.code, 'signature.missing');
    for (const gw of [a, b])
      assert.ok(!JSON.stringify(gw.logs).includes(pg.password), 'the database password is never logged');
  });

  test('a wrong password or an unreachable database stops the gateway at start, with the reason', async () => {
    const db = await pg.createDatabase();
    await assert.rejects(
      startTestGateway({
        upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
        policy: worldPolicy(world.registry.host),
        files: { 'trusted.pub': readFileSync(world.trusted.pub), 'pg-password': 'wrong\n' },
        extraConfig: `metadata:\n  driver: postgres\n  url: ${db.url}\n  passwordFile: pg-password`,
      }),
      (err: Error & { code?: string }) => err.code === '28P01',
    );
    const closed = await freePort();
    await assert.rejects(
      startTestGateway({
        upstreamsYaml: `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
        policy: worldPolicy(world.registry.host),
        files: { 'trusted.pub': readFileSync(world.trusted.pub), 'pg-password': `${pg.password}\n` },
        extraConfig: `metadata:\n  driver: postgres\n  url: ${db.url.replace(/:\d+\//, `:${closed}/`)}\n  passwordFile: pg-password`,
      }),
      (err: Error & { code?: string }) => err.code === 'ECONNREFUSED',
    );
  });
});
