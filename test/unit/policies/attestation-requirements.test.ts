import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { digestOf } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import type { BundleEvidence, DsseEvidence, Evidence } from '../../../policies/model.js';

/**
 * `attestation` requirements, decided over a real Sigstore bundle v0.3 (a DSSE in-toto
 * statement signed keylessly with the public-good Fulcio, logged in Rekor; from
 * cosign's tests) whose subject is go-containerregistry's empty image. CEL conditions
 * are checked when the policy loads, with the place of the problem in the file.
 */
const FIXTURE = fileURLToPath(new URL('../../../../test/fixtures/sigstore/cosign-oci-attestation/', import.meta.url));
const manifest = readFileSync(`${FIXTURE}manifest.json`);
const digest = digestOf(manifest);
const bundleBytes = readFileSync(`${FIXTURE}bundle.sigstore.json`);
const real: BundleEvidence = { source: 'referrer sha256:… layer 0', bundle: bundleBytes };
const TYPE = 'https://cosign.sigstore.dev/attestation/v1';
const SIGNER = 'keyless: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }';

const compile = (requirement: string) =>
  compilePolicy(
    'p.yaml',
    ['rules:', '  - scope: reg.example/team', '    require:', `      - ${requirement}`, ''].join('\n'),
    () => Buffer.alloc(0),
  );
const attestation = (conditions: string, extra = 'identity: any') =>
  compile(`attestation: { predicateType: ${TYPE}, ${SIGNER}, conditions: [${conditions}], ${extra} }`);
const decide = async (policy: ReturnType<typeof compile>, bundles: BundleEvidence[] = [real], d = digest) => {
  const evidence: Evidence = { cosign: [], bundles, problems: [], manifest };
  return evaluate(await policy, { name: 'reg.example/team/app', digest: d, kind: 'image' }, evidence, new Date());
};
const loadError = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    if (err instanceof LoadError) return err;
    throw err;
  }
  assert.fail('the policy loaded');
};

test('a verified statement of the type, about this digest, whose conditions hold, is admitted', async () => {
  const d = await decide(attestation(`'predicate.Data.contains("foo")', 'predicateType.startsWith("https://")'`));
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  const v = d.reasons.find((r) => r.code === 'signature.verified');
  assert.equal(v?.predicateType, TYPE);
  assert.match(v?.message ?? '', /cody@soyland\.com/);
});

test('the subject name passes through the identity rule; a statement for another digest does not count', async () => {
  assert.equal((await decide(attestation(`'true'`, 'identity: { exact: "127.0.0.1:60943/repo" }'))).allowed, true);
  const other = await decide(attestation(`'true'`, 'identity: { exact: "127.0.0.1:60943/other" }'));
  assert.equal(other.denial, 'signature.identity_mismatch');
  // identity: repository (the default) compares with the name the client asked for.
  assert.equal((await decide(attestation(`'true'`, 'identity: repository'))).denial, 'signature.identity_mismatch');
  const elsewhere = await decide(attestation(`'true'`), [real], digestOf(Buffer.from('another manifest')));
  assert.equal(elsewhere.denial, 'signature.digest_mismatch');
});

test('a condition that is false, or cannot be evaluated, denies with attestation.condition_failed', async () => {
  const no = await decide(attestation(`'predicate.Data.contains("baz")'`));
  assert.equal(no.denial, 'attestation.condition_failed');
  assert.match(no.reasons.find((r) => r.code === 'attestation.condition_failed')?.message ?? '', /baz/);
  const missing = await decide(attestation(`'predicate.buildDefinition.buildType == "x"'`));
  assert.equal(missing.denial, 'attestation.condition_failed');
  assert.match(missing.reasons.find((r) => r.code === 'attestation.condition_failed')?.message ?? '', /No such key/);
  // matchesRE2 matches the whole value in linear time.
  assert.equal((await decide(attestation(`'matchesRE2(predicate.Timestamp, "2025-.*Z")'`))).allowed, true);
  assert.equal((await decide(attestation(`'matchesRE2(predicate.Timestamp, "2025")'`))).allowed, false);
});

test('another predicate type, another signer, or an altered bundle do not count', async () => {
  const type = await decide(compile(`attestation: { predicateType: https://slsa.dev/provenance/v1, ${SIGNER} }`));
  assert.equal(type.denial, 'attestation.missing');
  const signer = await decide(
    compile(
      `attestation: { predicateType: ${TYPE}, keyless: { issuer: https://github.com/login/oauth, subjectRegExp: '.*@example\\.com' }, identity: any }`,
    ),
  );
  assert.equal(signer.denial, 'signature.signer_untrusted');
  const doc = JSON.parse(bundleBytes.toString('utf8')) as { dsseEnvelope: { payload: string } };
  const statement = JSON.parse(Buffer.from(doc.dsseEnvelope.payload, 'base64').toString('utf8')) as {
    predicate: { Data: string };
  };
  statement.predicate.Data = '{"foo": "baz"}\n';
  doc.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
  const altered = await decide(attestation(`'true'`), [
    { source: 'referrer sha256:… layer 0', bundle: Buffer.from(JSON.stringify(doc)) },
  ]);
  assert.equal(altered.denial, 'signature.invalid');
  const none = await decide(attestation(`'true'`), []);
  assert.equal(none.denial, 'attestation.missing');
});

test('an attestation is not an image signature, and an image signature statement is not an attestation', async () => {
  const d = await decide(compile(`cosign: { ${SIGNER}, identity: any }`));
  assert.equal(d.denial, 'signature.missing');
});

test('conditions are type-checked at load, with the line and column of the problem', async () => {
  const syntax = await loadError(attestation(`'predicate.Data +'`));
  assert.equal(syntax.code, 'POLICY_INVALID');
  const d = syntax.diagnostics[0];
  assert.equal(d?.line, 4);
  // The column of the end of the expression inside the quoted scalar, not of the list.
  const line = `      - attestation: { predicateType: ${TYPE}, ${SIGNER}, conditions: ['predicate.Data +'], identity: any }`;
  assert.equal(d?.column, line.indexOf("'predicate.Data +'") + 1 + 1 + 'predicate.Data +'.length);
  for (const bad of [`'predicateType == 1'`, `'nothing == 1'`, `'size(predicate)'`]) {
    const e = await loadError(attestation(bad));
    assert.equal(e.code, 'POLICY_INVALID', bad);
  }
  // In a block scalar, the line of the problem inside it.
  const block = await loadError(
    compilePolicy(
      'p.yaml',
      [
        'rules:',
        '  - scope: reg.example/team',
        '    require:',
        '      - attestation:',
        `          predicateType: ${TYPE}`,
        `          ${SIGNER}`,
        '          conditions:',
        '            - |',
        '              predicate.Data.contains("foo") &&',
        '                nothing == 1',
        '',
      ].join('\n'),
      () => Buffer.alloc(0),
    ),
  );
  assert.deepEqual([block.diagnostics[0]?.line, block.diagnostics[0]?.column], [10, 17]);
});

test('conditions whose cost is not linear in the predicate, or that backtrack, are refused at load', async () => {
  const nested = await loadError(attestation(`'predicate.l.all(a, predicate.l.exists(b, a == b))'`));
  assert.match(nested.diagnostics[0]?.message ?? '', /comprehension/);
  const regex = await loadError(attestation(`'predicate.Data.matches("(a+)+b")'`));
  assert.match(regex.diagnostics[0]?.message ?? '', /matchesRE2/);
  const huge = await loadError(
    attestation(`'${Array.from({ length: 200 }, (_, i) => `predicate.x${i} == 1`).join(' || ')}'`),
  );
  assert.equal(huge.code, 'POLICY_INVALID');
  const grandparent = await loadError(attestation(`'predicate.l.all(a, a.m.all(b, a.m.exists(c, b == c)))'`));
  assert.match(grandparent.diagnostics[0]?.message ?? '', /field of that comprehension's variable \(b\)/);
  // Shapes that would cost the square (or more) of the predicate, or exhaust memory, whatever the predicate holds.
  for (const costly of [
    'predicate.a.map(x, predicate.a).map(l, l.map(y, predicate.a)).all(m, m.all(k, k.all(z, z >= 0)))',
    'predicate.a.all(x, cel.bind(x, predicate.a, x.all(y, y >= 0)))',
    'predicate.packages.all(p, !(p in predicate.denied))',
    'predicate.a.map(x, predicate.a + predicate.a).size() > 0',
    'predicate.a.filter(x, x > 0).all(y, y > 1)',
    'predicate.items.all(x, matchesRE2(x.v, x.p))',
  ]) {
    const e = await loadError(attestation(`'${costly}'`));
    assert.equal(e.code, 'POLICY_INVALID', costly);
  }
  // A comprehension over the enclosing element's fields is linear, and fine.
  assert.equal((await decide(attestation(`'[1, 2].all(x, x > 0)'`))).allowed, true);
  assert.equal(
    (await decide(attestation(`'[[1], [2, 3]].all(r, r.all(v, v > 0)) && ![[1], [2]].exists(r, r.exists(v, v > 2))'`)))
      .allowed,
    true,
  );
});

/**
 * The same signed statement in cosign's `.att` layer form: the DSSE envelope as the
 * layer, the Fulcio certificate and the Rekor entry (SET, body, time, index, log id)
 * in its annotations, as cosign attest writes them.
 */
function asAttLayer(bundle: Buffer): DsseEvidence {
  const b = JSON.parse(bundle.toString('utf8')) as {
    verificationMaterial: {
      certificate: { rawBytes: string };
      tlogEntries: {
        logIndex: string;
        logId: { keyId: string };
        integratedTime: string;
        inclusionPromise: { signedEntryTimestamp: string };
        canonicalizedBody: string;
      }[];
    };
    dsseEnvelope: unknown;
  };
  const e = b.verificationMaterial.tlogEntries[0];
  assert.ok(e);
  const pem = `-----BEGIN CERTIFICATE-----\n${(b.verificationMaterial.certificate.rawBytes.match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----\n`;
  return {
    source: 'tag sha256-….att layer 0',
    envelope: Buffer.from(JSON.stringify(b.dsseEnvelope)),
    certificate: pem,
    rekorBundle: JSON.stringify({
      SignedEntryTimestamp: e.inclusionPromise.signedEntryTimestamp,
      Payload: {
        body: e.canonicalizedBody,
        integratedTime: Number(e.integratedTime),
        logIndex: Number(e.logIndex),
        logID: Buffer.from(e.logId.keyId, 'base64').toString('hex'),
      },
    }),
  };
}

test("a keyless attestation in cosign's .att layer form is verified like the bundle", async () => {
  const att = asAttLayer(bundleBytes);
  const policy = attestation(`'predicate.Data.contains("foo")'`);
  const evidence = (attestations: DsseEvidence[]): Evidence => ({ cosign: [], attestations, problems: [], manifest });
  const subject = { name: 'reg.example/team/app', digest, kind: 'image' as const };
  const ok = await evaluate(await policy, subject, evidence([att]), new Date());
  assert.equal(ok.allowed, true, JSON.stringify(ok.reasons));
  // Another certificate than the one logged: refused before the log is even consulted.
  const other = readFileSync(
    fileURLToPath(
      new URL('../../../../test/fixtures/sigstore/containers-image-fulcio-rekor/signature-1', import.meta.url),
    ),
  );
  const otherCert = (JSON.parse(other.subarray(15).toString('utf8')) as { annotations: Record<string, string> })
    .annotations['dev.sigstore.cosign/certificate'];
  const swapped = await evaluate(await policy, subject, evidence([{ ...att, certificate: otherCert }]), new Date());
  assert.equal(swapped.allowed, false);
  assert.equal(swapped.denial, 'signature.log_entry_invalid');
  // No log entry: a keyless attestation must be logged.
  const unlogged = await evaluate(await policy, subject, evidence([{ ...att, rekorBundle: undefined }]), new Date());
  assert.equal(unlogged.denial, 'signature.log_entry_invalid');
});
