import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { json, serveImage, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * A name the policy rejects (a `reject` rule, or `default: reject`) is refused with
 * 403 and its reason before anything goes upstream: a silent upstream does not make
 * the client wait, no digest of the rejected content is disclosed, and the tags of a
 * rejected repository are not listed with the gateway's own credentials.
 */
describe('rejected names are refused at once, without asking the upstream', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  const held: import('node:http').ServerResponse[] = [];

  before(async () => {
    up = await startFaultRegistry();
    // The upstream is silent for everything under team/legacy and other/: a request would hang.
    const silent = (_req: unknown, res: import('node:http').ServerResponse) => void held.push(res);
    for (const method of ['GET', 'HEAD']) {
      for (const path of [
        '/v2/team/legacy/manifests/1',
        `/v2/team/legacy/manifests/sha256:${'a'.repeat(64)}`,
        '/v2/team/legacy/tags/list',
        `/v2/team/legacy/referrers/sha256:${'a'.repeat(64)}`,
        `/v2/team/legacy/blobs/sha256:${'a'.repeat(64)}`,
        '/v2/other/thing/manifests/1',
        '/v2/other/thing/tags/list',
      ])
        up.route(method, path, silent);
    }
    serveImage(up, 'team/ok', '1', [{ bytes: Buffer.from('ok') }]);
    up.route('GET', '/v2/team/ok/tags/list', (_req, res) => json(res, 200, { name: 'team/ok', tags: ['1'] }));
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - name: "${up.host}"`,
        `    url: "${up.url}"`,
        '    prefix: up',
        '    username: gateway',
        '    passwordEnv: UP_PASSWORD',
      ].join('\n'),
      env: { ...process.env, UP_PASSWORD: 'secret' },
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${up.host}/team`,
        '    accept: anything',
        `  - scope: ${up.host}/team/legacy`,
        '    reject: "retired: use team/ok"',
        '',
      ].join('\n'),
    });
  });
  after(async () => {
    for (const r of held) r.destroy();
    await gw?.stop();
    await up?.stop();
  });

  const upstreamSaw = (path: string) => up.requests.some((r) => r.url.split('?')[0] === path);

  for (const [what, path, reason] of [
    ['a manifest by tag under a reject rule', '/v2/up/team/legacy/manifests/1', 'policy.rejected'],
    [
      'a manifest by digest under a reject rule',
      `/v2/up/team/legacy/manifests/sha256:${'a'.repeat(64)}`,
      'policy.rejected',
    ],
    ['the tag list of a rejected repository', '/v2/up/team/legacy/tags/list', 'policy.rejected'],
    ['referrers in a rejected repository', `/v2/up/team/legacy/referrers/sha256:${'a'.repeat(64)}`, 'policy.rejected'],
    ['a blob in a rejected repository', `/v2/up/team/legacy/blobs/sha256:${'a'.repeat(64)}`, 'policy.rejected'],
    ['a manifest under default: reject', '/v2/up/other/thing/manifests/1', 'policy.rejected'],
    ['a tag list under default: reject', '/v2/up/other/thing/tags/list', 'policy.rejected'],
  ] as const) {
    test(`${what}: 403 with its reason, nothing asked upstream, no digest disclosed`, async () => {
      const res = await fetch(`${gw.url}${path}`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 403);
      const body = (await res.json()) as {
        errors: { code: string; message: string; detail: { reason: string; rule: string } }[];
      };
      const e = body.errors[0];
      assert.equal(e?.code, 'DENIED');
      assert.equal(e?.detail.reason, reason);
      const asked = path.match(/sha256:[0-9a-f]{64}/)?.[0];
      const disclosed = JSON.stringify(body).match(/sha256:[0-9a-f]{64}/g) ?? [];
      // A policy digest is fine; the only content digest named is the one the client asked for.
      const policyDigest = gw.running.policy().digest.text;
      assert.deepEqual(
        disclosed.filter((d) => d !== policyDigest && d !== asked),
        [],
        'no digest the client did not ask for',
      );
      assert.equal(upstreamSaw(path.replace('/v2/up/', '/v2/')), false, 'the upstream was not asked');
    });
  }

  test('names the policy admits still go upstream', async () => {
    const res = await fetch(`${gw.url}/v2/up/team/ok/tags/list`);
    assert.deepEqual(await res.json(), { name: 'up/team/ok', tags: ['1'] });
  });
});
