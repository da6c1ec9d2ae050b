import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteMetadataStore } from '../gateway/metadata/sqlite-metadata-store.js';
import { digestOf, parseDigest } from '../oci/digest.js';
import { evaluate } from '../policies/evaluator.js';
import { compilePolicy } from '../policies/loader.js';
import type { Evidence } from '../policies/model.js';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../policies/sigstore/public-good-root.js';
import { gpgExport, gpgHome, gpgKey, gpgSign, simpleSigningPayload } from '../test/helpers/gpg.js';
import { cosignEvidence } from '../test/helpers/signatures.js';
import { median } from './measure.js';

/**
 * Policy decision latency, in process: 1, 10 and 100 candidate signatures for one
 * digest, only the last of them valid (the worst case: every other one is tried
 * first), for GPG (real gpg signatures) and cosign, keyless cosign, Sigstore bundles and
 * Notation (real signatures of public projects); and the decision for a digest
 * the gateway already admitted under the current policy (its metadata lookup, the
 * policy digest comparison and the revocation check), which is what a repeated
 * pull costs.
 */
export async function benchDecisions(work: string, log: (m: string) => void): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const name = 'reg.example/team/app';
  const digest = parseDigest(`sha256:${'9'.repeat(64)}`);
  const reference = `${name}:1`;

  log('decisions: GPG keys and signatures (gpg)');
  const home = gpgHome(work);
  const trusted = await gpgKey(home, 'Bench Signer');
  const other = await gpgKey(home, 'Bench Other');
  const good = await gpgSign(home, trusted, simpleSigningPayload(digest.text, reference));
  const bad = await gpgSign(home, other, simpleSigningPayload(digest.text, reference));
  const keyBytes = await gpgExport(home, trusted);
  const gp = await compilePolicy(
    'bench.yaml',
    'rules:\n  - scope: reg.example/team\n    require:\n      - gpg: { keys: [k.gpg] }\n',
    () => keyBytes,
  );

  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const otherKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const cp = await compilePolicy(
    'bench.yaml',
    'rules:\n  - scope: reg.example/team\n    require:\n      - cosign: { keys: [k.pub] }\n',
    () => Buffer.from(pem),
  );

  for (const n of [1, 10, 100]) {
    const gpgEvidence: Evidence = {
      cosign: [],
      problems: [],
      gpg: [
        ...Array.from({ length: n - 1 }, (_, i) => ({ source: `bad ${i}`, blob: bad })),
        { source: 'good', blob: good },
      ],
    };
    const cosignEv: Evidence = {
      problems: [],
      cosign: [
        ...Array.from({ length: n - 1 }, (_, i) => cosignEvidence(otherKey, digest.text, name, `bad ${i}`)),
        cosignEvidence(privateKey, digest.text, name, 'good'),
      ],
    };
    for (const [label, policy, evidence] of [
      ['GPG', gp, gpgEvidence],
      ['cosign', cp, cosignEv],
    ] as const) {
      const runs = n === 100 ? 30 : 200;
      const times: number[] = [];
      for (let i = 0; i < runs + 5; i++) {
        const t0 = process.hrtime.bigint();
        const d = await evaluate(policy, { name, digest, tag: '1' }, evidence);
        if (i >= 5) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!d.allowed)
          throw new Error(`the bench ${label} signature did not verify: ${JSON.stringify(d.reasons.slice(-2))}`);
      }
      out[`${label}, ${n} signature${n === 1 ? '' : 's'}`] = median(times);
    }
  }

  log('decisions: a real keyless cosign signature (public-good Fulcio and Rekor), verified offline');
  const fixture = fileURLToPath(
    new URL('../../test/fixtures/sigstore/containers-image-fulcio-rekor/', import.meta.url),
  );
  const manifest = readFileSync(`${fixture}manifest.json`);
  const layer = JSON.parse(readFileSync(`${fixture}signature-1`).subarray(15).toString('utf8')) as {
    payload: string;
    annotations: Record<string, string>;
  };
  const keylessSig = {
    payload: Buffer.from(layer.payload, 'base64'),
    signature: layer.annotations['dev.cosignproject.cosign/signature'] as string,
    certificate: layer.annotations['dev.sigstore.cosign/certificate'],
    rekorBundle: layer.annotations['dev.sigstore.cosign/bundle'],
  };
  const altered = Buffer.from(keylessSig.signature, 'base64');
  altered[altered.length - 3] = (altered[altered.length - 3] ?? 0) ^ 1;
  // Each measured decision gets a freshly loaded root (so nothing is remembered from the last one).
  const rootBytes = Buffer.from(JSON.stringify(PUBLIC_GOOD_TRUSTED_ROOT));
  const keylessPolicy = () =>
    compilePolicy(
      'bench.yaml',
      'rules:\n  - scope: reg.example/team\n    require:\n      - cosign: { keyless: { issuer: https://github.com/login/oauth, subject: mitr@redhat.com, trustedRoot: root.json }, identity: any }\n',
      () => rootBytes,
    );
  const keylessDigest = digestOf(manifest);
  for (const n of [1, 100]) {
    const evidence: Evidence = {
      problems: [],
      cosign: [
        ...Array.from({ length: n - 1 }, (_, i) => ({
          ...keylessSig,
          signature: altered.toString('base64'),
          source: `bad ${i}`,
        })),
        { ...keylessSig, source: 'good' },
      ],
    };
    const runs = n === 100 ? 10 : 60;
    const times: number[] = [];
    const again: number[] = [];
    for (let i = 0; i < runs + 3; i++) {
      const kp = await keylessPolicy();
      for (const into of [times, again]) {
        const t0 = process.hrtime.bigint();
        const d = await evaluate(kp, { name, digest: keylessDigest }, evidence);
        if (i >= 3) into.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!d.allowed)
          throw new Error(`the bench keyless signature did not verify: ${JSON.stringify(d.reasons.slice(-2))}`);
      }
    }
    out[`keyless cosign, ${n} signature${n === 1 ? '' : 's'}`] = median(times);
    if (n === 1) out['keyless cosign, decided again (remembered)'] = median(again);
  }

  log('decisions: a real keyless v0.3 DSSE bundle attestation with a CEL condition, verified offline');
  const attFixture = fileURLToPath(new URL('../../test/fixtures/sigstore/cosign-oci-attestation/', import.meta.url));
  const attManifest = readFileSync(`${attFixture}manifest.json`);
  const bundle = readFileSync(`${attFixture}bundle.sigstore.json`);
  const doc = JSON.parse(bundle.toString('utf8')) as { dsseEnvelope: { signatures: { sig: string }[] } };
  const sig = Buffer.from(doc.dsseEnvelope.signatures[0]?.sig ?? '', 'base64');
  sig[sig.length - 3] = (sig[sig.length - 3] ?? 0) ^ 1;
  const bogus = JSON.stringify({
    ...doc,
    dsseEnvelope: { ...doc.dsseEnvelope, signatures: [{ sig: sig.toString('base64') }] },
  });
  const attPolicy = () =>
    compilePolicy(
      'bench.yaml',
      `rules:\n  - scope: reg.example/team\n    require:\n      - attestation: { predicateType: https://cosign.sigstore.dev/attestation/v1, keyless: { issuer: https://github.com/login/oauth, subject: cody@soyland.com, trustedRoot: root.json }, conditions: ['predicate.Data.contains("foo") && predicateType.startsWith("https://")'], identity: any }\n`,
      () => rootBytes,
    );
  for (const n of [1, 100]) {
    const evidence: Evidence = {
      problems: [],
      cosign: [],
      manifest: attManifest,
      bundles: [
        ...Array.from({ length: n - 1 }, (_, i) => ({ source: `bad ${i}`, bundle: Buffer.from(bogus) })),
        { source: 'good', bundle },
      ],
    };
    const runs = n === 100 ? 10 : 60;
    const times: number[] = [];
    const again: number[] = [];
    for (let i = 0; i < runs + 3; i++) {
      const ap = await attPolicy();
      for (const into of [times, again]) {
        const t0 = process.hrtime.bigint();
        const d = await evaluate(ap, { name, digest: digestOf(attManifest) }, evidence);
        if (i >= 3) into.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!d.allowed) throw new Error(`the bench attestation did not verify: ${JSON.stringify(d.reasons.slice(-2))}`);
      }
    }
    out[`v0.3 bundle attestation with a CEL condition, ${n} bundle${n === 1 ? '' : 's'}`] = median(times);
    if (n === 1) out['v0.3 bundle attestation, decided again (remembered)'] = median(again);
  }

  log('decisions: real Notation signatures (notation-go JWS and COSE vectors), verified offline');
  const notationFixture = fileURLToPath(new URL('../../test/fixtures/notation/notation-go/', import.meta.url));
  const notationManifest = readFileSync(
    `${notationFixture}oci-layout/blobs/sha256/19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0`,
  );
  const jws = readFileSync(`${notationFixture}jws_signature.sig`);
  const jwsDoc = JSON.parse(jws.toString('utf8')) as { header: { x5c: string[] }; signature: string };
  const leaf = Buffer.from(jwsDoc.header.x5c[0] as string, 'base64');
  const alteredSig = Buffer.from(jwsDoc.signature, 'base64url');
  alteredSig[alteredSig.length - 3] = (alteredSig[alteredSig.length - 3] ?? 0) ^ 1;
  const alteredJws = Buffer.from(JSON.stringify({ ...jwsDoc, signature: alteredSig.toString('base64url') }));
  const notationPolicy = await compilePolicy(
    'bench.yaml',
    'rules:\n  - scope: reg.example/team\n    require:\n      - notation: { trustStores: { ca: [alpine.crt] }, trustedIdentities: ["x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"] }\n',
    () => leaf,
  );
  const envelopes = {
    JWS: { mediaType: 'application/jose+json', envelope: jws },
    COSE: { mediaType: 'application/cose', envelope: readFileSync(`${notationFixture}cose_signature.sig`) },
  };
  for (const [label, good, n] of [
    ['JWS', envelopes.JWS, 1],
    ['COSE', envelopes.COSE, 1],
    ['JWS', envelopes.JWS, 100],
  ] as const) {
    const evidence: Evidence = {
      problems: [],
      cosign: [],
      manifest: notationManifest,
      notation: [
        ...Array.from({ length: n - 1 }, (_, i) => ({
          source: `bad ${i}`,
          mediaType: envelopes.JWS.mediaType,
          envelope: alteredJws,
        })),
        { source: 'good', ...good },
      ],
    };
    const runs = n === 100 ? 10 : 60;
    const times: number[] = [];
    for (let i = 0; i < runs + 3; i++) {
      const t0 = process.hrtime.bigint();
      const d = await evaluate(notationPolicy, { name, digest: digestOf(notationManifest) }, evidence);
      if (i >= 3) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!d.allowed) throw new Error(`the bench Notation signature did not verify: ${JSON.stringify(d.reasons)}`);
    }
    out[`Notation ${label}, ${n} signature${n === 1 ? '' : 's'}`] = median(times);
  }

  log('decisions: a digest already admitted under the current policy');
  const store = new SqliteMetadataStore(join(work, 'bench-metadata.db'));
  try {
    await store.admit(
      name,
      {
        digest: digest.text,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1000,
        kind: 'image',
        policyDigest: cp.digest.text,
        blobs: [],
        children: [],
      },
      Date.now(),
    );
    const times: number[] = [];
    for (let i = 0; i < 2100; i++) {
      const t0 = process.hrtime.bigint();
      const admitted = await store.admittedManifest(name, digest.text);
      const holds =
        admitted !== undefined && admitted.policyDigest === cp.digest.text && !(cp.revoked?.has(digest.text) ?? false);
      if (i >= 100) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!holds) throw new Error('the admission was not found');
    }
    out['cached decision'] = median(times);
  } finally {
    await store.close();
  }
  return out;
}
