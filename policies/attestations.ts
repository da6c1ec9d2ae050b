import { createHash } from 'node:crypto';
import type {
  AttestationRequirement,
  BundleEvidence,
  CosignRequirement,
  DsseEvidence,
  Evidence,
  KeylessRule,
  KeylessTrust,
  Reason,
  ReasonCode,
  Subject,
  TrustedKey,
} from './model.js';
import { identityProblem, problemReasons, rank, signerProblem, type Candidate, type LeafCheck } from './signatures.js';
import { tryVerify } from './verifiers/cosign.js';
import { dsseBundleOf, isRefusal, publicGoodTrust } from './verifiers/cosign-keyless.js';
import { parseStatement, subjectFor, type Statement } from './verifiers/in-toto.js';
import { pae, readBundle, verifySigstoreBundle, type BundleContent } from './verifiers/sigstore-bundle.js';
import { isObject, parseStrictJson } from '../oci/strict-json.js';

/**
 * Signed statements about an image: Sigstore bundles attached through the referrers
 * API, and cosign's `.att` DSSE envelopes. A bundle holding cosign's image-signature
 * statement (predicate type `https://sigstore.dev/cosign/sign/v1`), or a message
 * signature over the manifest itself, counts for a `cosign` requirement like a `.sig`
 * signature; a statement of another predicate type counts for an `attestation`
 * requirement of that type whose conditions hold. Pure.
 */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

interface SignerSpec {
  readonly keys: readonly TrustedKey[];
  readonly keyless?: KeylessRule | undefined;
  readonly logTrust?: KeylessTrust | undefined;
}

type Verified =
  | {
      readonly ok: true;
      readonly signer: string;
      readonly key: string;
      readonly label: string;
      readonly content: BundleContent;
    }
  | { readonly ok: false; readonly code: ReasonCode; readonly message: string };

/** One bundle, verified for this requirement's signers. */
function verifyBundleEvidence(spec: SignerSpec, b: BundleEvidence, manifest: Uint8Array | undefined): Verified {
  const json = readBundle(b.bundle);
  if (typeof json === 'string') return { ok: false, code: 'signature.invalid', message: json };
  const v = spec.keyless
    ? verifySigstoreBundle(json, manifest, spec.keyless.trust)
    : verifySigstoreBundle(json, manifest, spec.logTrust ?? publicGoodTrust(), spec.keys);
  if (!v.ok) return v;
  if (v.signer.kind === 'key')
    return {
      ok: true,
      signer: `cosign:${v.signer.key.fingerprint}`,
      key: v.signer.key.source,
      label: `Sigstore bundle signed by ${v.signer.key.source} (sha256:${v.signer.key.fingerprint.slice(0, 16)}…)`,
      content: v.content,
    };
  const rule = spec.keyless as KeylessRule;
  const untrusted = signerProblem(rule, v.signer);
  if (untrusted !== undefined) return { ok: false, code: 'signature.signer_untrusted', message: untrusted };
  return {
    ok: true,
    signer: `keyless:${v.signer.issuer}\n${v.signer.subject}`,
    key: `${v.signer.subject} (${v.signer.issuer})`,
    label: `Sigstore bundle signed keylessly by ${v.signer.subject}, issuer ${v.signer.issuer}, verified against ${rule.trust.source}`,
    content: v.content,
  };
}

/** One cosign `.att` envelope, verified for this requirement's signers. */
function verifyAttEvidence(spec: SignerSpec, d: DsseEvidence): Verified {
  if (spec.keyless) {
    const json = dsseBundleOf(d);
    if (typeof json === 'string') return { ok: false, code: 'signature.certificate_untrusted', message: json };
    if (isRefusal(json)) return { ok: false, ...json };
    return verifyBundleEvidence(spec, { source: d.source, bundle: Buffer.from(JSON.stringify(json)) }, undefined);
  }
  let env: unknown;
  try {
    env = parseStrictJson(d.envelope, { maxDepth: 8 });
  } catch (err) {
    return {
      ok: false,
      code: 'signature.invalid',
      message: `the DSSE envelope is not valid JSON: ${(err as Error).message}`,
    };
  }
  if (!isObject(env) || typeof env.payload !== 'string' || typeof env.payloadType !== 'string')
    return { ok: false, code: 'signature.invalid', message: 'not a DSSE envelope (payload, payloadType, signatures)' };
  const sigs = Array.isArray(env.signatures) ? env.signatures.slice(0, 16) : [];
  const payload = Buffer.from(env.payload, 'base64');
  const data = pae(env.payloadType, payload);
  for (const s of sigs) {
    const sig = isObject(s) && typeof s.sig === 'string' ? Buffer.from(s.sig, 'base64') : undefined;
    const key = sig && spec.keys.find((k) => tryVerify(k, data, sig) === 'valid');
    if (key)
      return {
        ok: true,
        signer: `cosign:${key.fingerprint}`,
        key: key.source,
        label: `cosign attestation signed by ${key.source} (sha256:${key.fingerprint.slice(0, 16)}…)`,
        content: { kind: 'dsse', payloadType: env.payloadType, payload },
      };
  }
  return {
    ok: false,
    code: 'signature.untrusted_key',
    message: 'no trusted key verifies this attestation (signed by another key, or altered after signing)',
  };
}

/** The statement a verified DSSE content holds, or why it is not one. */
function statementOf(content: BundleContent): Statement | { code: ReasonCode; message: string } {
  if (content.kind !== 'dsse')
    return { code: 'signature.payload_invalid', message: 'a message signature, not a statement' };
  const statement = parseStatement(content.payloadType, content.payload);
  return typeof statement === 'string' ? { code: 'signature.payload_invalid', message: statement } : statement;
}

/** The statement's entry for `subject`, or the reason it does not count (another digest, another repository). */
function entryFor(
  statement: Statement,
  subject: Subject,
  identity: CosignRequirement['identity'],
): Statement['subjects'][number] | { code: ReasonCode; message: string } {
  const entry = subjectFor(statement, subject.digest.text);
  if (!entry)
    return {
      code: 'signature.digest_mismatch',
      message: `the statement is about ${statement.subjects.map((s) => Object.entries(s.digest).map(([a, h]) => `${a}:${h}`)[0]).join(', ')}, not ${subject.digest.text}`,
    };
  const named = nameProblem(identity, entry.name, subject.name);
  return named !== undefined ? { code: 'signature.identity_mismatch', message: named } : entry;
}

/** The identity rule applied to what a statement's subject (or a message signature) names. */
function nameProblem(
  identity: CosignRequirement['identity'],
  name: string | undefined,
  subjectName: string,
): string | undefined {
  if (identity.kind === 'any') return undefined;
  if (name === undefined || name === '')
    return 'it names no repository (identity: any accepts a signature that binds the digest only)';
  return identityProblem(identity, name, subjectName);
}

/** Candidates for a `cosign` requirement among the bundles: image-signature statements and message signatures. */
export function bundleSignatureCandidates(
  req: CosignRequirement,
  index: number,
  subject: Subject,
  evidence: Evidence,
  reasons: Reason[],
  candidates: Candidate[],
): number {
  let seen = 0;
  for (const b of evidence.bundles ?? []) {
    const v = verifyBundleEvidence(req, b, evidence.manifest);
    const at = { requirement: index, evidence: b.source };
    if (!v.ok) {
      seen++;
      reasons.push({ code: v.code, message: v.message, ...at });
      continue;
    }
    if (v.content.kind === 'message') {
      seen++;
      // The message digest was checked against the manifest bytes: it signs this digest, and names nothing.
      const named = nameProblem(req.identity, undefined, subject.name);
      if (named !== undefined) {
        reasons.push({
          code: 'signature.identity_mismatch',
          message: `a message-signature bundle: ${named}`,
          ...at,
          key: v.key,
        });
        continue;
      }
    } else {
      const statement = statementOf(v.content);
      if ('predicateType' in statement && statement.predicateType !== COSIGN_SIGN_PREDICATE) continue; // an attestation
      seen++;
      const entry = 'predicateType' in statement ? entryFor(statement, subject, req.identity) : statement;
      if ('code' in entry) {
        reasons.push({ code: entry.code, message: entry.message, ...at, key: v.key });
        continue;
      }
    }
    if (candidates.some((c) => c.signer === v.signer)) continue;
    const type = v.content.kind === 'dsse' ? { predicateType: COSIGN_SIGN_PREDICATE } : {};
    candidates.push({
      signer: v.signer,
      reason: { code: 'signature.verified', message: v.label, ...at, key: v.key, ...type },
    });
  }
  return seen;
}

/**
 * An `attestation` requirement: a verified statement of one of its predicate types,
 * about this digest and (by the identity rule) this repository, whose conditions all
 * hold. A signer counts once per predicate type.
 */
export function checkAttestation(
  req: AttestationRequirement,
  index: number,
  subject: Subject,
  evidence: Evidence,
): LeafCheck {
  const reasons: Reason[] = problemReasons(evidence, index);
  const candidates: Candidate[] = [];
  const found: { source: string; v: Verified }[] = [
    ...(evidence.attestations ?? []).map((d) => ({ source: d.source, v: verifyAttEvidence(req, d) })),
    ...(evidence.bundles ?? []).map((b) => ({ source: b.source, v: verifyBundleEvidence(req, b, evidence.manifest) })),
  ];
  let ofType = 0;
  // One statement by one signer is judged once, however many times it was served.
  const judged = new Set<string>();
  for (const { source, v } of found) {
    const at = { requirement: index, evidence: source };
    if (!v.ok) {
      reasons.push({ code: v.code, message: v.message, ...at });
      continue;
    }
    if (v.content.kind !== 'dsse') continue; // a message signature attests nothing
    const statement = statementOf(v.content);
    if ('code' in statement) {
      ofType++;
      reasons.push({ code: statement.code, message: statement.message, ...at, key: v.key });
      continue;
    }
    if (!req.predicateTypes.includes(statement.predicateType)) continue;
    ofType++;
    const once = `${v.signer}\0${createHash('sha256').update(v.content.payload).digest('hex')}`;
    if (judged.has(once)) continue;
    judged.add(once);
    const entry = entryFor(statement, subject, req.identity);
    if ('code' in entry) {
      reasons.push({ code: entry.code, message: entry.message, ...at, key: v.key });
      continue;
    }
    const failed = req.conditions
      .map((c) => ({
        c,
        r: c.evaluate({ predicateType: statement.predicateType, predicate: statement.predicate, subject: entry }),
      }))
      .find(({ r }) => r !== true);
    if (failed) {
      reasons.push({
        code: 'attestation.condition_failed',
        message: `${statement.predicateType} attestation: the condition ${JSON.stringify(failed.c.text)} does not hold (${failed.r as string})`,
        ...at,
        key: v.key,
      });
      continue;
    }
    const signer = `att:${statement.predicateType}\n${v.signer}`;
    if (candidates.some((c) => c.signer === signer)) continue;
    candidates.push({
      signer,
      reason: {
        code: 'signature.verified',
        message: `${statement.predicateType} attestation: ${v.label}${req.conditions.length > 0 ? `; ${req.conditions.length} condition(s) hold` : ''}`,
        ...at,
        key: v.key,
        predicateType: statement.predicateType,
      },
    });
  }
  if (ofType === 0)
    reasons.push({
      code: 'attestation.missing',
      message: `no attestation of type ${req.predicateTypes.join(' or ')} by a trusted signer found for ${subject.digest.text}`,
      requirement: index,
    });
  return { reasons, candidates, primary: rank(reasons) };
}
