import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { cosignKeyPair, cosignSign, type CosignKey } from '../helpers/cosign.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildImage, pushImage } from '../helpers/images.js';
import { run } from '../helpers/peers.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));

/**
 * tags: pin keeps the first verified digest of a tag until an operator releases it
 * (a moved upstream tag is logged, not followed); tags: require-digest refuses pulls
 * by tag.
 */
describe('tag rules: pin and require-digest', () => {
  let registry: TestRegistry;
  let gw: TestGateway;
  let key: CosignKey;
  const dir = tempDir('portcullis-pin-');
  const layout = join(dir.path, 'layout');
  const digests: Record<string, string> = {};

  before(async () => {
    registry = await startRegistry();
    key = await cosignKeyPair(dir.path, 'trusted');
    for (const t of ['one', 'two', 'strict']) await buildImage(layout, t, { text: t });
    digests.one = await pushImage(layout, 'one', `${registry.host}/test/pinned:latest`);
    await cosignSign(key, `${registry.host}/test/pinned@${digests.one}`);
    digests.strict = await pushImage(layout, 'strict', `${registry.host}/test/digestonly:1`);
    await cosignSign(key, `${registry.host}/test/digestonly@${digests.strict}`);
    const require = ['    require:', '      - cosign: { keys: [trusted.pub] }'];
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${registry.host}", url: "${registry.url}", prefix: up }`,
      policy: [
        'rules:',
        `  - scope: ${registry.host}/test/pinned`,
        '    tags: pin',
        ...require,
        `  - scope: ${registry.host}/test/digestonly`,
        '    tags: require-digest',
        ...require,
        '',
      ].join('\n'),
      files: { 'trusted.pub': readFileSync(key.pub) },
      extraConfig: 'tagTtlSeconds: 0',
    });
  });
  after(async () => {
    await gw?.stop();
    await registry?.stop();
    dir.cleanup();
  });

  const pull = async (repo: string, ref: string) => {
    const res = await fetch(`${gw.url}/v2/up/test/${repo}/manifests/${ref}`, { headers: { accept: OCI } });
    const body = await res.text();
    return { status: res.status, digest: res.headers.get('docker-content-digest'), body };
  };
  const cli = (...args: string[]) => run(process.execPath, ['--', CLI, ...args], { allowFail: true });

  test('a pinned tag keeps its first digest when the upstream tag moves, until it is released', async () => {
    assert.deepEqual((await pull('pinned', 'latest')).digest, digests.one);
    digests.two = await pushImage(layout, 'two', `${registry.host}/test/pinned:latest`);
    await cosignSign(key, `${registry.host}/test/pinned@${digests.two}`);
    const still = await pull('pinned', 'latest');
    assert.deepEqual([still.status, still.digest], [200, digests.one]);
    const moved = gw.logs.find((l) => l.event === 'tag.moved');
    assert.deepEqual([moved?.pinned, moved?.upstream], [digests.one, digests.two]);

    const config = join(gw.dir, 'config.yaml');
    const list = await cli('tags', 'list', '--config', config);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`test/pinned:latest\\s+${digests.one}.*upstream now ${digests.two}`));
    assert.equal(
      (await cli('tags', 'release', '--config', config, `${registry.host}/test/pinned`)).code,
      2,
      'no tag: refused with a sentence',
    );
    const release = await cli('tags', 'release', '--config', config, `${registry.host}/test/pinned:latest`);
    assert.equal(release.code, 0, release.stderr);
    assert.deepEqual(
      (await pull('pinned', 'latest')).digest,
      digests.two,
      'released: the new digest is verified and pinned',
    );
    assert.equal((await cli('tags', 'release', '--config', config, `${registry.host}/test/nothing:latest`)).code, 1);
  });

  test('require-digest: a pull by tag is refused with policy.digest_required, by digest it is served', async () => {
    const byTag = await pull('digestonly', '1');
    assert.equal(byTag.status, 403);
    assert.equal(
      (JSON.parse(byTag.body) as { errors: { detail: { reason: string } }[] }).errors[0]?.detail.reason,
      'policy.digest_required',
    );
    const byDigest = await pull('digestonly', digests.strict ?? '');
    assert.deepEqual([byDigest.status, byDigest.digest], [200, digests.strict]);
  });
});
