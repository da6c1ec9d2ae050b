import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest } from '../../../oci/digest.js';
import { compileContainersPolicy } from '../../../policies/containers-policy.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { fixture } from '../../helpers/fixtures.js';

const digest = parseDigest(`sha256:${'e'.repeat(64)}`);
const keys = (p: string) => {
  if (p === 'cosign.pub') return fixture('cosign-tv1/cosign.pub');
  if (p === 'k.gpg') return fixture('gpg-tv2/public-key.asc');
  throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
};
const compile = (doc: unknown) => compileContainersPolicy('policy.json', JSON.stringify(doc, null, 2), keys);
const accept = [{ type: 'insecureAcceptAnything' }];
const reject = [{ type: 'reject' }];

test('scopes are chosen as containers/image does: reference, repository, namespace, host, wildcard, "", default', async () => {
  const p = await compile({
    default: accept,
    transports: {
      docker: {
        'reg.example/team/app:1': accept,
        'reg.example/team/app': reject,
        'reg.example/team': accept,
        'reg.example': reject,
        '*.example.org': accept,
        '*.sub.example.org': reject,
        '': reject,
      },
    },
  });
  const rule = async (name: string, tag?: string) =>
    (await evaluate(p, { name, digest, tag }, { cosign: [], problems: [] })).rule;
  assert.equal(await rule('reg.example/team/app', '1'), 'reg.example/team/app:1');
  assert.equal(await rule('reg.example/team/app', '2'), 'reg.example/team/app');
  assert.equal(await rule('reg.example/team/app'), 'reg.example/team/app', 'by digest, a tag scope does not apply');
  assert.equal(await rule('reg.example/team/other', '1'), 'reg.example/team');
  assert.equal(await rule('reg.example/x', '1'), 'reg.example');
  assert.equal(await rule('a.sub.example.org:5000/x', '1'), '*.sub.example.org');
  assert.equal(await rule('b.example.org/x', '1'), '*.example.org');
  assert.equal(await rule('example.org/x', '1'), 'docker ""', 'a wildcard needs a subdomain');
  assert.equal(await rule('elsewhere.example/x', '1'), 'docker ""');
  const noTransportDefault = await compile({ default: accept, transports: { docker: { 'reg.example': reject } } });
  assert.equal(
    (await evaluate(noTransportDefault, { name: 'x.example/y', digest }, { cosign: [], problems: [] })).rule,
    'default',
  );
});

test('every requirement of a list must hold; reject anywhere rejects', async () => {
  const p = await compile({ default: [...accept, ...reject] });
  assert.equal((await evaluate(p, { name: 'a.example/b', digest }, { cosign: [], problems: [] })).allowed, false);
});

test('sigstoreSigned with keys: the cosign fixture verifies under matchRepository and not under the default identity rule', async () => {
  const TV1 = parseDigest('sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00');
  const name = '192.168.64.2:5000/cosign-signed-single-sample';
  const evidence = {
    cosign: [
      {
        source: 'tv1',
        payload: fixture('cosign-tv1/payload.json'),
        signature: fixture('cosign-tv1/signature.b64').toString().trim(),
      },
    ],
    problems: [],
  };
  const withIdentity = (signedIdentity?: unknown) =>
    compile({
      default: reject,
      transports: {
        docker: {
          '192.168.64.2:5000': [
            { type: 'sigstoreSigned', keyPath: 'cosign.pub', ...(signedIdentity ? { signedIdentity } : {}) },
          ],
        },
      },
    });
  assert.equal(
    (await evaluate(await withIdentity({ type: 'matchRepository' }), { name, digest: TV1, tag: 'latest' }, evidence))
      .allowed,
    true,
  );
  const d = await evaluate(await withIdentity(), { name, digest: TV1, tag: 'latest' }, evidence);
  assert.equal(
    d.denial,
    'signature.identity_mismatch',
    'cosign signs a repository only, which matchRepoDigestOrExact refuses',
  );
});

test('signedBy with GPG keys, by path or inline keyData, and the transports that do not apply are noted', async () => {
  const p = await compile({
    default: reject,
    transports: {
      docker: {
        'docker.io/testing': [
          {
            type: 'signedBy',
            keyType: 'GPGKeys',
            keyData: fixture('gpg-tv2/public-key.asc').toString('base64'),
            signedIdentity: { type: 'matchRepository' },
          },
        ],
      },
      'docker-daemon': { '': accept },
      atomic: {},
    },
  });
  assert.deepEqual(p.notes?.length, 2);
  const d = await evaluate(
    p,
    {
      name: 'docker.io/testing/manifest',
      digest: parseDigest('sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55'),
      tag: 'latest',
    },
    { cosign: [], gpg: [{ source: 'tv2', blob: fixture('gpg-tv2/image.signature') }], problems: [] },
  );
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
});

test('what the gateway does not implement, and malformed files, are load errors with positions', async () => {
  const bad: unknown[] = [
    { default: [] },
    { transports: {} },
    { default: reject, extra: 1 },
    { default: [{ type: 'signedBy', keyType: 'X509Certificates', keyPath: 'k.gpg' }] },
    { default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: 'k.gpg', keyData: 'AAAA' }] },
    // fulcio needs a Rekor key (containers/image refuses it without one).
    { default: [{ type: 'sigstoreSigned', fulcio: { caData: 'AAAA', oidcIssuer: 'https://i', subjectEmail: 'a@b' } }] },
    { default: [{ type: 'sigstoreSigned', keyPath: 'cosign.pub', rekorPublicKeyPath: 'missing-rekor.pub' }] },
    { default: [{ type: 'signedBaseLayer', baseLayerIdentity: {} }] },
    { default: [{ type: 'reject', keyPath: 'x' }] },
    { default: reject, transports: { docker: { 'UPPER case/x': reject } } },
    { default: reject, transports: { docker: { 'Docker.io/library': accept } } },
    { default: reject, transports: { docker: { 'registry-1.docker.io/library': accept } } },
    { default: reject, transports: { docker: { 'reg.example:443/x': accept } } },
    { default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: 'missing.gpg' }] },
    {
      default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: 'k.gpg', signedIdentity: { type: 'exactReference' } }],
    },
  ];
  for (const doc of bad) {
    await assert.rejects(
      compile(doc),
      (e: unknown) => e instanceof LoadError && e.code === 'POLICY_INVALID' && e.diagnostics.every((x) => x.line >= 1),
      JSON.stringify(doc),
    );
  }
  await assert.rejects(
    compileContainersPolicy('p.json', '{"default": [{"type": "reject"}], "default": []}', keys),
    LoadError,
    'duplicate keys',
  );
});

test('a containers-policy.json requirement list is checked as podman checks it: one signature may satisfy each', async () => {
  const { cosignEvidence, cosignTestKey } = await import('../../helpers/signatures.js');
  const k = cosignTestKey();
  const data = Buffer.from(k.pem).toString('base64');
  const signed = { type: 'sigstoreSigned', keyData: data, signedIdentity: { type: 'matchRepository' } };
  const p = await compile({ default: reject, transports: { docker: { 'reg.example/team': [signed, signed] } } });
  const name = 'reg.example/team/app';
  const d = await evaluate(
    p,
    { name, digest },
    { cosign: [cosignEvidence(k.privateKey, digest.text, name, 'sig 0')], problems: [] },
  );
  assert.equal(d.allowed, true);
});

test('containers-policy.json is strict JSON, as podman reads it: every leniency is an error with line and column', async () => {
  const cases: [string, string, number, number][] = [
    ['trailing comma', '{\n  "default": [{"type": "reject"}],\n}\n', 3, 1],
    ['# comment', '{\n  # podman refuses this\n  "default": [{"type": "reject"}]\n}\n', 2, 3],
    ['unquoted key', '{\n  default: [{"type": "reject"}]\n}\n', 2, 3],
    ['single quotes', "{\n  \"default\": [{'type': 'reject'}]\n}\n", 2, 16],
    ['duplicate key', '{\n  "default": [{"type": "reject"}],\n  "default": []\n}\n', 3, 3],
    ['a byte-order mark', '\ufeff{"default": [{"type": "reject"}]}', 1, 1],
  ];
  for (const [what, text, line, column] of cases) {
    await assert.rejects(
      compileContainersPolicy('policy.json', text, keys),
      (err: unknown) => {
        assert.ok(err instanceof LoadError, what);
        assert.equal(err.code, 'POLICY_INVALID', what);
        assert.deepEqual([err.diagnostics[0]?.line, err.diagnostics[0]?.column], [line, column], what);
        return true;
      },
      what,
    );
  }
  await compileContainersPolicy('policy.json', '{ "default": [ { "type": "reject" } ] }\n', keys);
});
