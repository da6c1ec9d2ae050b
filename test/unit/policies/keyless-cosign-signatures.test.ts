import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { digestOf, parseDigest } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { compilePolicy } from '../../../policies/loader.js';
import type { CosignSignatureEvidence, Evidence } from '../../../policies/model.js';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../../../policies/sigstore/public-good-root.js';

/**
 * A real keyless cosign signature (Sigstore public-good Fulcio and Rekor, a Rekor
 * SET, no TSA; from containers/image's fixtures) decided offline against the shipped
 * public-good root: the signer must be the named OIDC issuer and subject, the
 * certificate valid at the logged time, the SET genuine, the payload for this digest.
 */
const FIXTURE = fileURLToPath(
  new URL('../../../../test/fixtures/sigstore/containers-image-fulcio-rekor/', import.meta.url),
);
const manifest = readFileSync(`${FIXTURE}manifest.json`);
const digest = digestOf(manifest);
const wrapped = readFileSync(`${FIXTURE}signature-1`);
const MAGIC = '\0sigstore-json\n';
const layer = JSON.parse(wrapped.subarray(MAGIC.length).toString('utf8')) as {
  payload: string;
  annotations: Record<string, string>;
};
const real: CosignSignatureEvidence = {
  source: 'tag sha256-….sig layer 0',
  payload: Buffer.from(layer.payload, 'base64'),
  signature: layer.annotations['dev.cosignproject.cosign/signature'] as string,
  certificate: layer.annotations['dev.sigstore.cosign/certificate'],
  rekorBundle: layer.annotations['dev.sigstore.cosign/bundle'],
};
const SIGNED_AS = '192.168.64.2:5000/cosign-signed/fulcio-rekor-1';
const NAME = 'reg.example/cosign-signed/fulcio-rekor-1';

const files: Record<string, string> = {};
const compile = (text: string) => compilePolicy('p.yaml', text, (p) => Buffer.from(files[p] ?? ''));
const keyless = (who: string, extra = '') =>
  compile(
    [
      'rules:',
      '  - scope: reg.example/cosign-signed',
      '    require:',
      `      - cosign: { keyless: { ${who}${extra} }, identity: { exact: ${SIGNED_AS} } }`,
      '',
    ].join('\n'),
  );
const decide = async (policy: ReturnType<typeof compile>, evidence: Evidence, d = digest) =>
  evaluate(await policy, { name: NAME, digest: d, kind: 'image' }, evidence, new Date('2026-12-03T00:00:00Z'));
const MITR = 'issuer: https://github.com/login/oauth, subject: mitr@redhat.com';

test('the real keyless signature is admitted for its signer, years after its certificate expired', async () => {
  const d = await decide(keyless(MITR), { cosign: [real], problems: [] });
  assert.equal(d.allowed, true, JSON.stringify(d.reasons));
  assert.match(d.reasons.find((r) => r.code === 'signature.verified')?.message ?? '', /mitr@redhat\.com/);
  assert.equal(digest.text, 'sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a');
});

test('another subject or issuer is not the signer; patterns are anchored', async () => {
  for (const who of [
    'issuer: https://github.com/login/oauth, subject: someone@redhat.com',
    'issuer: https://accounts.google.com, subject: mitr@redhat.com',
    'issuer: https://github.com/login/oauth, subjectRegExp: mitr@redhat',
  ]) {
    const d = await decide(keyless(who), { cosign: [real], problems: [] });
    assert.equal(d.allowed, false, who);
    assert.equal(d.denial, 'signature.signer_untrusted', who);
  }
  const pattern = await decide(
    keyless("issuer: https://github.com/login/oauth, subjectRegExp: '[a-z]+@redhat\\.com'"),
    {
      cosign: [real],
      problems: [],
    },
  );
  assert.equal(pattern.allowed, true);
});

test('a forged log promise, a changed signature or another digest is refused', async () => {
  const set = JSON.parse(real.rekorBundle as string) as { SignedEntryTimestamp: string; Payload: unknown };
  const sigBytes = Buffer.from(set.SignedEntryTimestamp, 'base64');
  sigBytes[sigBytes.length - 4] = (sigBytes[sigBytes.length - 4] ?? 0) ^ 0x01;
  const forgedSet = {
    ...real,
    rekorBundle: JSON.stringify({ ...set, SignedEntryTimestamp: sigBytes.toString('base64') }),
  };
  const sig = Buffer.from(real.signature, 'base64');
  sig[sig.length - 3] = (sig[sig.length - 3] ?? 0) ^ 0x01;
  const forgedSig = { ...real, signature: sig.toString('base64') };
  const noLog = { ...real, rekorBundle: undefined };
  for (const [what, ev, code] of [
    ['forged SET', forgedSet, 'signature.log_entry_invalid'],
    ['altered signature', forgedSig, 'signature.invalid'],
    ['no log entry, no timestamp', noLog, 'signature.log_entry_invalid'],
  ] as const) {
    const d = await decide(keyless(MITR), { cosign: [ev], problems: [] });
    assert.equal(d.allowed, false, what);
    assert.equal(d.denial, code, what);
  }
  const other = parseDigest(`sha256:${'e'.repeat(64)}`);
  const d = await decide(keyless(MITR), { cosign: [real], problems: [] }, other);
  assert.equal(d.denial, 'signature.digest_mismatch');
  const keyed = await decide(keyless(MITR), { cosign: [{ ...real, certificate: undefined }], problems: [] });
  assert.equal(keyed.denial, 'signature.untrusted_key');
});

/** The same ECDSA signature with s replaced by n − s: valid for the key, other bytes than the log holds. */
function highS(derBase64: string): string {
  const der = Buffer.from(derBase64, 'base64');
  const rLen = der[3] as number;
  const r = der.subarray(4, 4 + rLen);
  const s = der.subarray(6 + rLen, 6 + rLen + (der[5 + rLen] as number));
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  let hex = (n - BigInt(`0x${s.toString('hex')}`)).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let s2 = Buffer.from(hex, 'hex');
  if ((s2[0] as number) & 0x80) s2 = Buffer.concat([Buffer.from([0]), s2]);
  const body = Buffer.concat([Buffer.from([0x02, r.length]), r, Buffer.from([0x02, s2.length]), s2]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]).toString('base64');
}

test('the log entry must be for this signature and this certificate', async () => {
  // Valid for the certificate's key, but not the signature Rekor logged.
  const d = await decide(keyless(MITR), { cosign: [{ ...real, signature: highS(real.signature) }], problems: [] });
  assert.equal(d.denial, 'signature.log_entry_invalid');
  // A log entry naming another certificate.
  const set = JSON.parse(real.rekorBundle as string) as { Payload: { body: string } };
  const body = JSON.parse(Buffer.from(set.Payload.body, 'base64').toString('utf8')) as {
    spec: { signature: { publicKey: { content: string } } };
  };
  body.spec.signature.publicKey.content = Buffer.from(
    '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
  ).toString('base64');
  const other = {
    ...real,
    rekorBundle: JSON.stringify({
      ...set,
      Payload: { ...set.Payload, body: Buffer.from(JSON.stringify(body)).toString('base64') },
    }),
  };
  assert.equal((await decide(keyless(MITR), { cosign: [other], problems: [] })).denial, 'signature.log_entry_invalid');
});

test('patterns are RE2, matched in linear time against the whole value', async () => {
  const started = Date.now();
  const slow = await decide(
    keyless("issuer: https://github.com/login/oauth, subjectRegExp: '([a-z0-9.]+)+@example\\.com'"),
    {
      cosign: [real],
      problems: [],
    },
  );
  assert.equal(slow.denial, 'signature.signer_untrusted');
  assert.ok(Date.now() - started < 2000, 'no catastrophic backtracking');
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'loaded',
      (e: unknown) => (e instanceof LoadError ? e.code : String(e)),
    );
  assert.equal(
    await code(keyless("issuer: https://x, subjectRegExp: 'x)|(.*'")),
    'POLICY_INVALID',
    'no escape from the anchors',
  );
});

test('a root with no CT log, or whose authority ended before the signature, does not admit it', async () => {
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'loaded',
      (e: unknown) => (e instanceof LoadError ? e.code : String(e)),
    );
  const edited = (edit: (r: Record<string, unknown[]>) => void) => {
    const root = structuredClone(PUBLIC_GOOD_TRUSTED_ROOT) as Record<string, unknown[]>;
    edit(root);
    return JSON.stringify(root);
  };
  files['noct.json'] = edited((r) => {
    r.ctlogs = [];
  });
  assert.equal(await code(keyless(MITR, ', trustedRoot: noct.json')), 'POLICY_INVALID');
  files['ended.json'] = edited((r) => {
    for (const ca of r.certificateAuthorities as { validFor: { start: string; end?: string } }[])
      ca.validFor = { start: '2021-03-07T00:00:00Z', end: '2022-01-01T00:00:00Z' };
  });
  const d = await decide(keyless(MITR, ', trustedRoot: ended.json'), { cosign: [real], problems: [] });
  assert.equal(d.denial, 'signature.certificate_untrusted');
});

test('policy load refuses backtracking patterns, keys with keyless, and a root whose log has no start', async () => {
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'loaded',
      (e: unknown) => (e instanceof LoadError ? e.code : String(e)),
    );
  assert.equal(await code(keyless("issuer: https://x, subjectRegExp: '(a)\\1'")), 'POLICY_INVALID');
  assert.equal(await code(keyless("issuer: https://x, subjectRegExp: '(?=a)a'")), 'POLICY_INVALID');
  assert.equal(await code(keyless('issuer: https://x, subject: a, subjectRegExp: b')), 'POLICY_INVALID');
  const root = structuredClone(PUBLIC_GOOD_TRUSTED_ROOT) as {
    tlogs: { publicKey: { validFor: { start?: string } } }[];
  };
  delete root.tlogs[0]?.publicKey.validFor.start;
  files['root.json'] = JSON.stringify(root);
  assert.equal(await code(keyless(MITR, ', trustedRoot: root.json')), 'POLICY_INVALID');
  files['good.json'] = JSON.stringify(PUBLIC_GOOD_TRUSTED_ROOT);
  const fromFile = await decide(keyless(MITR, ', trustedRoot: good.json'), { cosign: [real], problems: [] });
  assert.equal(fromFile.allowed, true);
});

/**
 * Certificate claims, on a real GitHub Actions certificate: the sigstore-conformance
 * v0.1 bundle over a.txt, read as a `.sig` layer would carry it. a.txt is no
 * simple-signing payload, so a signer that matches ends at payload_invalid; one
 * that does not, at signer_untrusted.
 */
const GHA = fileURLToPath(new URL('../../../../test/fixtures/sigstore/conformance/happy-path-v0.1/', import.meta.url));
const ghaBundle = JSON.parse(readFileSync(`${GHA}bundle.sigstore.json`, 'utf8')) as {
  verificationMaterial: {
    x509CertificateChain: { certificates: { rawBytes: string }[] };
    tlogEntries: {
      logIndex: string;
      logId: { keyId: string };
      integratedTime: string;
      inclusionPromise: { signedEntryTimestamp: string };
      canonicalizedBody: string;
    }[];
  };
  messageSignature: { signature: string };
};
const entry = ghaBundle.verificationMaterial.tlogEntries[0];
const leaf = ghaBundle.verificationMaterial.x509CertificateChain.certificates[0]?.rawBytes ?? '';
const gha: CosignSignatureEvidence = {
  source: 'conformance happy-path-v0.1',
  payload: readFileSync(`${GHA}../a.txt`),
  signature: ghaBundle.messageSignature.signature,
  certificate: `-----BEGIN CERTIFICATE-----\n${(leaf.match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----\n`,
  rekorBundle: JSON.stringify({
    SignedEntryTimestamp: entry?.inclusionPromise.signedEntryTimestamp,
    Payload: {
      body: entry?.canonicalizedBody,
      integratedTime: Number(entry?.integratedTime),
      logIndex: Number(entry?.logIndex),
      logID: Buffer.from(entry?.logId.keyId ?? '', 'base64').toString('hex'),
    },
  }),
};
const WORKFLOW =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';

test("Fulcio's extension claims (source repository, ref, trigger, runner) are matched, exactly or by pattern", async () => {
  const who = `issuer: https://token.actions.githubusercontent.com, subject: '${WORKFLOW}'`;
  const claims = (c: string) => `, claims: { ${c} }`;
  const decideWith = async (c: string) => (await decide(keyless(who, c), { cosign: [gha], problems: [] })).denial;
  assert.equal(await decideWith(''), 'signature.payload_invalid', 'the signer matches; a.txt is no image signature');
  assert.equal(
    await decideWith(
      claims(
        "sourceRepositoryURI: https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon, sourceRepositoryRef: refs/heads/main, runnerEnvironment: github-hosted, buildSignerURI: { regExp: 'https://github\\.com/sigstore-conformance/.*' }",
      ),
    ),
    'signature.payload_invalid',
  );
  for (const wrong of [
    'sourceRepositoryURI: https://github.com/someone/else',
    'sourceRepositoryRef: refs/tags/v1',
    "buildTrigger: { regExp: 'release' }",
  ])
    assert.equal(await decideWith(claims(wrong)), 'signature.signer_untrusted', wrong);
  const code = await compile(
    `rules:\n  - scope: reg.example/cosign-signed\n    require:\n      - cosign: { keyless: { ${who}${claims('colour: blue')} } }\n`,
  ).then(
    () => 'loaded',
    (e: unknown) => (e instanceof LoadError ? e.code : String(e)),
  );
  assert.equal(code, 'POLICY_INVALID', 'an unknown claim name is refused');
});

test('thresholds: how many log entries, SCTs and verified times a keyless signature needs', async () => {
  // The real signature has one Rekor entry and one SCT.
  const ok = await decide(keyless(MITR, ', thresholds: { tlog: 1, sct: 1, timestamps: 1 }'), {
    cosign: [real],
    problems: [],
  });
  assert.equal(ok.allowed, true, JSON.stringify(ok.reasons));
  const twoLogs = await decide(keyless(MITR, ', thresholds: { tlog: 2 }'), { cosign: [real], problems: [] });
  assert.equal(twoLogs.denial, 'signature.log_entry_invalid');
  const twoScts = await decide(keyless(MITR, ', thresholds: { sct: 2 }'), { cosign: [real], problems: [] });
  assert.equal(twoScts.denial, 'signature.sct_invalid');
  const twoTimes = await decide(keyless(MITR, ', thresholds: { timestamps: 2 }'), { cosign: [real], problems: [] });
  assert.equal(twoTimes.denial, 'signature.timestamp_invalid');
  // A threshold of 0 loads, and says what it gives up.
  const lax = await keyless(MITR, ', thresholds: { sct: 0 }');
  assert.equal(lax.warnings?.length, 1);
  assert.equal((await keyless(MITR, ', thresholds: { sct: 1 }')).warnings?.length ?? 0, 0);
  // No time at all would judge the certificate now: refused at load, as are other numbers out of range.
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'loaded',
      (e: unknown) => (e instanceof LoadError ? e.code : String(e)),
    );
  for (const bad of [
    '{ timestamps: 0 }',
    '{ tlog: -1 }',
    '{ sct: 9 }',
    '{ tlog: 1.5 }',
    '{ tlog: "1" }',
    '{ logs: 1 }',
  ])
    assert.equal(await code(keyless(MITR, `, thresholds: ${bad}`)), 'POLICY_INVALID', bad);
});
