import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { startWorldGateway, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
const cli = (...args: string[]) => run(process.execPath, ['--', CLI, ...args], { allowFail: true });

/** portcullis policy test | explain | schema, run as a user runs them. */
describe('policy tooling: test a policy live, explain a decision, and the schema', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let stop: () => Promise<void> = async () => undefined;
  const dir = tempDir('portcullis-tools-');
  let policy: string;

  before(async () => {
    ({ world, gw, stop } = await startWorldGateway());
    policy = join(dir.path, 'policy.yaml');
    writeFileSync(policy, worldPolicy(world.registry.host));
    writeFileSync(join(dir.path, 'trusted.pub'), readFileSync(world.trusted.pub));
  });
  after(async () => {
    await stop();
    dir.cleanup();
  });

  test('policy test evaluates images at their registry, without a gateway: exit 0 when all pass, 1 when one is denied', async () => {
    const ok = await cli('policy', 'test', '--policy', policy, '--plain-http', `${world.registry.host}/test/signed:1`);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /ADMITTED/);
    assert.match(ok.stdout, /signature\.verified/);
    const mixed = await cli(
      'policy',
      'test',
      '--policy',
      policy,
      '--plain-http',
      '--json',
      `${world.registry.host}/test/signed:1`,
      `${world.registry.host}/test/otherkey:1`,
    );
    assert.equal(mixed.code, 1);
    const results = JSON.parse(mixed.stdout) as {
      image: string;
      digest: string;
      decision: { allowed: boolean; denial?: string };
    }[];
    assert.deepEqual(
      results.map((r) => [r.digest, r.decision.allowed, r.decision.denial]),
      [
        [world.digests.signed, true, undefined],
        [world.digests.otherkey, false, 'signature.untrusted_key'],
      ],
    );
    const missing = await cli(
      'policy',
      'test',
      '--policy',
      policy,
      '--plain-http',
      `${world.registry.host}/test/nothing-here:1`,
    );
    assert.equal(missing.code, 2);
    const broken = join(dir.path, 'broken.yaml');
    writeFileSync(broken, 'rules:\n  - scope: a.example\n    require: []\n');
    const bad = await cli('policy', 'test', '--policy', broken, '--plain-http', `${world.registry.host}/test/signed:1`);
    assert.equal(bad.code, 2, 'a policy that does not load is an error, not a denial');
    assert.match(bad.stdout, /broken\.yaml:3:/);
    const digestOnly = join(dir.path, 'digest-only.yaml');
    writeFileSync(
      digestOnly,
      worldPolicy(world.registry.host).replace('    require:', '    tags: require-digest\n    require:'),
    );
    const byTag = await cli(
      'policy',
      'test',
      '--policy',
      digestOnly,
      '--plain-http',
      '--json',
      `${world.registry.host}/test/signed:1`,
    );
    assert.equal(byTag.code, 1);
    assert.equal(
      (JSON.parse(byTag.stdout) as { decision: { denial: string } }[])[0]?.decision.denial,
      'policy.digest_required',
    );
    assert.equal(
      (
        await cli(
          'policy',
          'test',
          '--policy',
          digestOnly,
          '--plain-http',
          `${world.registry.host}/test/signed@${world.digests.signed}`,
        )
      ).code,
      0,
    );
  });

  test('policy test reads an OCI layout with its cosign signature', async () => {
    const layout = join(dir.path, 'layout');
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${world.registry.host}/test/signed:1`,
      `oci:${layout}:1`,
    ]);
    const sigTag = `${world.digests.signed.replace(':', '-')}.sig`;
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      '--preserve-digests',
      `docker://${world.registry.host}/test/signed:${sigTag}`,
      `oci:${layout}:${sigTag}`,
    ]);
    const r = await cli(
      'policy',
      'test',
      '--policy',
      policy,
      '--layout',
      layout,
      `${world.registry.host}/test/signed:1`,
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The same layout entry named as another repository: its signature names test/signed.
    const renamed = await cli(
      'policy',
      'test',
      '--policy',
      policy,
      '--json',
      '--layout',
      layout,
      `${world.registry.host}/test/elsewhere:1`,
    );
    assert.equal(renamed.code, 1);
    assert.equal(
      (JSON.parse(renamed.stdout) as { decision: { denial: string } }[])[0]?.decision.denial,
      'signature.identity_mismatch',
    );
    assert.equal(
      (await cli('policy', 'test', '--policy', policy, '--layout', layout, `${world.registry.host}/test/signed:2`))
        .code,
      2,
      'no such entry in the layout',
    );
  });

  test('policy explain tells why the running gateway admitted or denied a reference or digest', async () => {
    for (const repo of ['signed', 'unsigned'])
      await (
        await fetch(`${gw.url}/v2/up/test/${repo}/manifests/1`, {
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
        })
      ).arrayBuffer();
    const config = join(gw.dir, 'config.yaml');
    const admitted = await cli('policy', 'explain', '--config', config, `${world.registry.host}/test/signed:1`);
    assert.equal(admitted.code, 0, admitted.stderr);
    assert.match(admitted.stdout, /ADMITTED/);
    const denied = await cli('policy', 'explain', '--config', config, '--json', world.digests.unsigned);
    assert.equal(denied.code, 0);
    const records = JSON.parse(denied.stdout) as {
      allowed: boolean;
      reasons: { code: string }[];
      policyDigest: string;
    }[];
    assert.equal(records[0]?.allowed, false);
    assert.equal(records[0]?.reasons[0]?.code, 'signature.missing');
    assert.equal(records[0]?.policyDigest, gw.running.policy().digest.text);
    // By tag, the denials of that tag are found too (the tag never resolved to an admitted digest).
    const byTag = await cli('policy', 'explain', '--config', config, `${world.registry.host}/test/unsigned:1`);
    assert.equal(byTag.code, 0, byTag.stdout);
    assert.match(byTag.stdout, /DENIED/);
    assert.match(byTag.stdout, /signature\.missing/);
    // A name the policy rejects is refused before anything is fetched: explain says so from the policy.
    const rejected = await cli('policy', 'explain', '--config', config, `${world.registry.host}/elsewhere/app:1`);
    assert.equal(rejected.code, 0, rejected.stdout);
    assert.match(rejected.stdout, /refuses it by name.*policy\.rejected/);
    assert.equal((await cli('policy', 'explain', '--config', config, `sha256:${'0'.repeat(64)}`)).code, 1);
    const nowhere = join(dir.path, 'nowhere.yaml');
    writeFileSync(nowhere, `dataDir: ${JSON.stringify(join(dir.path, 'no-such-data'))}\nupstreams: []\n`);
    const none = await cli('policy', 'explain', '--config', nowhere, world.digests.signed);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no gateway data/);
    assert.doesNotMatch(none.stderr, /\n\s+at /, 'a sentence, not a stack trace');
  });

  test('policy schema is a JSON Schema that accepts the documented examples and rejects typos', async () => {
    const r = await cli('policy', 'schema');
    assert.equal(r.code, 0);
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(JSON.parse(r.stdout) as object);
    const good = [
      worldPolicy('reg.example'),
      'default: accept-anything\nrevoked: ["sha256:' +
        'a'.repeat(64) +
        '"]\nrules:\n  - scope: a.example\n    mode: audit\n    tags: pin\n    index: signed-platform\n    require:\n      - atLeast: 2\n        of: [{ cosign: { keys: [a.pub] } }, { gpg: { keys: [b.gpg], identity: matchRepository } }, { anyOf: [{ cosign: { keys: [c.pub] } }] }]\n',
      'rules:\n  - scope: b.example\n    reject: "retired"\n  - scope: c.example\n    accept: anything\n',
      "rules:\n  - scope: d.example\n    require:\n      - cosign: { keyless: { issuer: https://token.actions.githubusercontent.com, subjectRegExp: 'https://github\\.com/team/.*', claims: { sourceRepositoryRef: refs/heads/main, buildTrigger: { regExp: 'push|release' } } }, identity: repository }\n",
    ];
    for (const text of good) assert.equal(validate(parse(text)), true, `${text}\n${JSON.stringify(validate.errors)}`);
    const bad = [
      'rules:\n  - scope: a.example\n    requires: []\n',
      'rules:\n  - scope: a.example\n    mode: lenient\n    accept: anything\n',
      'rules:\n  - scope: a.example\n    require:\n      - cosign: { key: [a.pub] }\n',
      'rules:\n  - scope: a.example\n    require:\n      - cosign: { keys: [a.pub], keyless: { issuer: i, subject: s } }\n',
      'rules:\n  - scope: a.example\n    require:\n      - cosign: { keyless: { issuer: i } }\n',
      'rules:\n  - scope: a.example\n    require:\n      - cosign: { keyless: { issuer: i, subject: s, claims: { colour: blue } } }\n',
    ];
    for (const text of bad) assert.equal(validate(parse(text)), false, text);
  });
});
