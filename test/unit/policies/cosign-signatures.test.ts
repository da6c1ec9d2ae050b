import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';
import { parseDigest } from '../../../oci/digest.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import { fixture } from '../../helpers/fixtures.js';

const TV1_DIGEST = parseDigest('sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00');
const TV1_NAME = '192.168.64.2:5000/cosign-signed-single-sample';

function policyWith(keys: Record<string, Buffer | string>, identity = ''): ReturnType<typeof compilePolicy> {
  const names = Object.keys(keys);
  return compilePolicy(
    'policy.yaml',
    [
      'rules:',
      '  - scope: 192.168.64.2:5000',
      '    require:',
      `      - cosign: { keys: [${names.join(', ')}]${identity} }`,
      '',
    ].join('\n'),
    (p) => Buffer.from(keys[p] ?? ''),
  );
}
const tv1 = () => ({
  source: 'tv1',
  payload: fixture('cosign-tv1/payload.json'),
  signature: fixture('cosign-tv1/signature.b64').toString().trim(),
});

test('the containers/image cosign fixture verifies and is admitted', async () => {
  const d = await evaluate(
    await policyWith({ 'k.pub': fixture('cosign-tv1/cosign.pub') }),
    { name: TV1_NAME, digest: TV1_DIGEST },
    { cosign: [tv1()], problems: [] },
  );
  assert.equal(d.allowed, true);
  assert.ok(d.reasons.some((r) => r.code === 'signature.verified'));
});

test('the same signature for another digest is signature.digest_mismatch', async () => {
  const other = parseDigest(`sha256:${'1'.repeat(64)}`);
  const d = await evaluate(
    await policyWith({ 'k.pub': fixture('cosign-tv1/cosign.pub') }),
    { name: TV1_NAME, digest: other },
    { cosign: [tv1()], problems: [] },
  );
  assert.equal(d.allowed, false);
  assert.equal(d.denial, 'signature.digest_mismatch');
});

test('a signature for another repository is signature.identity_mismatch, unless the identity rule remaps it', async () => {
  const name = '192.168.64.2:5000/elsewhere';
  const key = { 'k.pub': fixture('cosign-tv1/cosign.pub') };
  assert.equal(
    (await evaluate(await policyWith(key), { name, digest: TV1_DIGEST }, { cosign: [tv1()], problems: [] })).denial,
    'signature.identity_mismatch',
  );
  const remap =
    ', identity: { prefix: "192.168.64.2:5000/elsewhere", signedPrefix: "192.168.64.2:5000/cosign-signed-single-sample" }';
  assert.equal(
    (await evaluate(await policyWith(key, remap), { name, digest: TV1_DIGEST }, { cosign: [tv1()], problems: [] }))
      .allowed,
    true,
  );
  assert.equal(
    (
      await evaluate(
        await policyWith(key, ', identity: any'),
        { name, digest: TV1_DIGEST },
        { cosign: [tv1()], problems: [] },
      )
    ).allowed,
    true,
  );
});

test('no signature at all is signature.missing; a malformed one is signature.invalid', async () => {
  const p = await policyWith({ 'k.pub': fixture('cosign-tv1/cosign.pub') });
  assert.equal(
    (await evaluate(p, { name: TV1_NAME, digest: TV1_DIGEST }, { cosign: [], problems: [] })).denial,
    'signature.missing',
  );
  assert.equal(
    (
      await evaluate(
        p,
        { name: TV1_NAME, digest: TV1_DIGEST },
        { cosign: [{ ...tv1(), signature: 'not base64!' }], problems: [] },
      )
    ).denial,
    'signature.invalid',
  );
});

for (const type of ['rsa', 'ed25519', 'ec-p384'] as const) {
  test(`${type} keys verify cosign payloads`, async () => {
    const { publicKey, privateKey } =
      type === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : type === 'ed25519'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const payload = fixture('cosign-tv1/payload.json');
    const sig = sign(type === 'ed25519' ? null : 'sha256', payload, privateKey).toString('base64');
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const d = await evaluate(
      await policyWith({ 'k.pub': pem }),
      { name: TV1_NAME, digest: TV1_DIGEST },
      { cosign: [{ source: 's', payload, signature: sig }], problems: [] },
    );
    assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  });
}

test('a correctly signed payload with a foreign type or extra fields is signature.payload_invalid', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  const payloads = [
    `{"critical":{"identity":{"docker-reference":"${TV1_NAME}"},"image":{"docker-manifest-digest":"${TV1_DIGEST.text}"},"type":"atomic container signature"},"optional":null}`,
    `{"critical":{"identity":{"docker-reference":"${TV1_NAME}"},"image":{"docker-manifest-digest":"${TV1_DIGEST.text}"},"type":"cosign container image signature","extra":1},"optional":null}`,
    `{"critical":{"identity":{"docker-reference":"${TV1_NAME}"},"image":{"docker-manifest-digest":"sha256:${'2'.repeat(64)}","docker-manifest-digest":"${TV1_DIGEST.text}"},"type":"cosign container image signature"}}`,
  ];
  for (const text of payloads) {
    const payload = Buffer.from(text);
    const d = await evaluate(
      await policyWith({ 'k.pub': pem }),
      { name: TV1_NAME, digest: TV1_DIGEST },
      {
        cosign: [{ source: 's', payload, signature: sign('sha256', payload, privateKey).toString('base64') }],
        problems: [],
      },
    );
    assert.equal(d.denial, 'signature.payload_invalid', text);
  }
});
