import assert from 'node:assert/strict';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';

/**
 * The gateway watches the files its policy reads, not everything in their
 * directories: a log written next to the policy causes no reloads, while an edit of
 * the policy, or a Kubernetes ConfigMap's `..data` swap, does.
 */
describe('the policy is reloaded only when the files it reads change', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  const reloads = async (): Promise<number> => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    return [...text.matchAll(/^portcullis_policy_reloads_total\{[^}]*\} (\d+)/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
  };

  before(async () => {
    up = await startFaultRegistry();
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: up }`,
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  test('a log file written in the policy directory, again and again, reloads nothing', async () => {
    for (let i = 0; i < 30; i++) {
      writeFileSync(join(gw.dir, 'gateway.log'), `line ${i}\n`, { flag: 'a' });
      await sleep(50);
    }
    await sleep(800);
    assert.equal(await reloads(), 0);
  });

  test('an edit of the policy, and a ConfigMap-style ..data swap, reload it', async () => {
    // The layout kubelet makes for a ConfigMap: policy.yaml -> ..data/policy.yaml, ..data -> ..<version>.
    mkdirSync(join(gw.dir, '..v1'));
    writeFileSync(join(gw.dir, '..v1', 'policy.yaml'), `${acceptAnythingPolicy()}# v1\n`);
    symlinkSync('..v1', join(gw.dir, '..data'));
    symlinkSync('..data/policy.yaml', join(gw.dir, 'policy.yaml.tmp'));
    renameSync(join(gw.dir, 'policy.yaml.tmp'), join(gw.dir, 'policy.yaml'));
    await waitFor(async () => gw.logs.some((l) => l.event === 'policy.reloaded'), 'the edit to be reloaded');
    const first = gw.running.policy().digest.text;
    mkdirSync(join(gw.dir, '..v2'));
    writeFileSync(join(gw.dir, '..v2', 'policy.yaml'), `${acceptAnythingPolicy()}# v2\n`);
    symlinkSync('..v2', join(gw.dir, '..data_tmp'));
    renameSync(join(gw.dir, '..data_tmp'), join(gw.dir, '..data'));
    await waitFor(async () => gw.running.policy().digest.text !== first, 'the ..data swap to be reloaded');
    assert.equal(gw.logs.filter((l) => l.event === 'policy.reloaded').length, 2);
  });
});
