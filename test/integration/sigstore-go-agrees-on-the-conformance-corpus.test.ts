import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { publicGoodTrust } from '../../policies/loader.js';
import { PUBLIC_GOOD_TRUSTED_ROOT } from '../../policies/sigstore/public-good-root.js';
import { parseStatement, subjectFor } from '../../policies/verifiers/in-toto.js';
import { readBundle, verifySigstoreBundle } from '../../policies/verifiers/sigstore-bundle.js';
import { fixture, fixturePath } from '../helpers/fixtures.js';
import { peer, run } from '../helpers/peers.js';
import { conformanceCases, outcome } from '../helpers/sigstore-conformance.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A differential test: sigstore-go 0.7.1's example verifier (`sigstore-go-verification`,
 * Debian 13's `sigstore-go` package) and Portcullis's bundle verifier are given the same
 * bundle, artifact, trusted root and expected identity, and must reach the same verdict.
 * Portcullis must also reach the corpus's expected one. Where sigstore-go reaches another,
 * the case is named below with the reason; the disagreements must be exactly those.
 *
 * The CLI is run as `sigstore-go-verification -trustedrootJSONpath ROOT (-artifact FILE |
 * -artifact-digest HEX) -expectedSAN ID -expectedIssuer ISSUER BUNDLE`, with its defaults
 * `-requireTlog -requireCTlog -requireTimestamp` (thresholds of 1, as our keyless verifier).
 * Cases without a root of their own use the public-good root Portcullis ships.
 */
const BINARY = 'sigstore-go-verification';

/**
 * Cases the CLI cannot put to sigstore-go: with `-publicKey` it still adds a certificate
 * identity to its policy (it refuses one without a SAN, and with one a key-signed bundle
 * fails "entity was not signed with a certificate"), so key-based verification is not
 * expressible. These are all the cases that carry a key.pub.
 */
const NOT_EXPRESSIBLE: Readonly<Record<string, string>> = {
  'managed-key-and-trusted-root': 'verified with key.pub',
  'managed-key-happy-path': 'verified with key.pub',
  'managed-key-wrong-key_fail': 'verified with key.pub',
};

const REKOR_V2 = 'a Rekor v2 entry (hashedrekord 0.0.2, no integrated time): 0.7.1 predates Rekor v2 and rejects it';
/** Where sigstore-go 0.7.1 does not reach the corpus's expected outcome (Portcullis does). */
const SIGSTORE_GO_DIFFERS: Readonly<Record<string, string>> = {
  'bundle-with-sct-with-extensions': REKOR_V2,
  'message-digest-mismatch_fail':
    'sigstore-go checks the signature over the artifact and ignores the messageDigest, an unauthenticated hint',
  'rekor2-checkpoint-cosigned': REKOR_V2,
  'rekor2-checkpoint-multiple-cosigs': REKOR_V2,
  'rekor2-checkpoint-origin-not-first': REKOR_V2,
  'rekor2-checkpoint-two-sigs-cosigned': REKOR_V2,
  'rekor2-checkpoint-two-sigs-from-origin': REKOR_V2,
  'rekor2-dsse-happy-path': REKOR_V2,
  'rekor2-happy-path': REKOR_V2,
  'rekor2-timestamp-with-embedded-cert': REKOR_V2,
  'rekor2-timestamp-with-expired-cert-chain': REKOR_V2,
  'rekor2-timestamp-without-embedded-cert': REKOR_V2,
  'trust-root-tlog-validity-end-inclusive':
    "the trusted root's tlog `operator` field is unknown to the protobuf-specs 0.4.1 in 0.7.1, which refuses the root",
  'trust-root-tsa-validity-end-inclusive': REKOR_V2,
};

/** One verification put to both verifiers. */
interface Trial {
  readonly name: string;
  /** The verdict the case's author expects. */
  readonly verifies: boolean;
  readonly bundle: string;
  /** Portcullis's decision: 'verified', or why not. */
  readonly ours: () => string;
  /** sigstore-go-verification's arguments, given the public-good root's path. */
  readonly args: (publicGoodRoot: string) => string[];
}

function conformanceTrials(): { trials: Trial[]; notExpressible: string[] } {
  const trials: Trial[] = [];
  const notExpressible: string[] = [];
  for (const c of conformanceCases()) {
    if (c.key !== undefined) {
      notExpressible.push(c.name);
      continue;
    }
    trials.push({
      name: c.name,
      verifies: c.verifies,
      bundle: c.bundle,
      ours: () => outcome(c.dir),
      args: (publicGoodRoot) => [
        ...['-trustedrootJSONpath', c.trustedRoot ?? publicGoodRoot, '-artifact', c.artifact],
        ...['-expectedSAN', c.identity, '-expectedIssuer', c.issuer, c.bundle],
      ],
    });
  }
  return { trials, notExpressible };
}

/**
 * The real keyless v0.3 DSSE bundle over go-containerregistry's empty image manifest
 * (test/fixtures/sigstore/cosign-oci-attestation), with the right digest and identity,
 * and with another digest or another subject, which both must refuse.
 */
function ociAttestationTrials(): Trial[] {
  const dir = 'sigstore/cosign-oci-attestation/';
  const bundle = fixturePath(`${dir}bundle.sigstore.json`);
  const digest = createHash('sha256')
    .update(fixture(`${dir}manifest.json`))
    .digest('hex');
  const other = createHash('sha256').update('another manifest').digest('hex');
  const issuer = 'https://github.com/login/oauth';
  const trial = (name: string, hex: string, subject: string, verifies: boolean): Trial => ({
    name: `cosign-oci-attestation ${name}`,
    verifies,
    bundle,
    ours: () => dsseOutcome(readFileSync(bundle), `sha256:${hex}`, subject, issuer),
    args: (publicGoodRoot) => [
      ...['-trustedrootJSONpath', publicGoodRoot, '-artifact-digest', hex],
      ...['-expectedSAN', subject, '-expectedIssuer', issuer, bundle],
    ],
  });
  return [
    trial('for its manifest digest', digest, 'cody@soyland.com', true),
    trial('for another digest_fail', other, 'cody@soyland.com', false),
    trial('for another subject_fail', digest, 'someone@soyland.com', false),
  ];
}

/** Portcullis's decision on a keyless DSSE bundle for an image digest, under the public-good root. */
function dsseOutcome(bytes: Buffer, digest: string, subject: string, issuer: string): string {
  const bundle = readBundle(bytes);
  if (typeof bundle === 'string') return `bundle: ${bundle}`;
  const v = verifySigstoreBundle(bundle, undefined, publicGoodTrust());
  if (!v.ok) return `${v.code}: ${v.message}`;
  if (v.signer.kind !== 'keyless' || v.signer.subject !== subject || v.signer.issuer !== issuer)
    return 'another signer';
  if (v.content.kind !== 'dsse') return 'not a DSSE bundle';
  const statement = parseStatement(v.content.payloadType, v.content.payload);
  if (typeof statement === 'string') return `statement: ${statement}`;
  return subjectFor(statement, digest) ? 'verified' : 'the statement does not name the digest';
}

/** Whether the bundle holds a Rekor v2 entry, hashedrekord or dsse 0.0.2 (for the summary only). */
function hasRekorV2Entry(path: string): boolean {
  try {
    const entries = (JSON.parse(readFileSync(path, 'utf8')) as { verificationMaterial?: { tlogEntries?: unknown } })
      .verificationMaterial?.tlogEntries;
    const v2 = (e: { kindVersion?: { kind?: string; version?: string } } | null) =>
      (e?.kindVersion?.kind === 'hashedrekord' || e?.kindVersion?.kind === 'dsse') && e.kindVersion.version === '0.0.2';
    return Array.isArray(entries) && entries.some(v2);
  } catch {
    return false;
  }
}

/** Runs `fn` over `items` with at most `limit` at a time, results in order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

interface Verdicts {
  readonly ours: string;
  readonly theirs: { readonly code: number; readonly stderr: string };
}

describe('sigstore-go reaches the same verdicts as Portcullis on the same Sigstore bundles', () => {
  const dir = tempDir('portcullis-sigstore-go-');
  const { trials: corpus, notExpressible } = conformanceTrials();
  const trials = [...corpus, ...ociAttestationTrials()];
  const verdicts = new Map<string, Verdicts>();

  before(async () => {
    const bin = peer(BINARY); // fails with the command that installs it
    const root = join(dir.path, 'public-good-trusted-root.json');
    writeFileSync(root, JSON.stringify(PUBLIC_GOOD_TRUSTED_ROOT));
    const limit = Math.max(2, Math.min(8, availableParallelism()));
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path };
    const results = await mapBounded(trials, limit, async (t) => ({
      ours: t.ours(),
      theirs: await run(bin, t.args(root), { env, allowFail: true, timeoutMs: 30_000 }),
    }));
    trials.forEach((t, i) => verdicts.set(t.name, results[i] as Verdicts));
  });
  after(() => dir.cleanup());

  it('puts every case to sigstore-go but those its CLI cannot express', () => {
    assert.deepEqual(notExpressible.sort(), Object.keys(NOT_EXPRESSIBLE).sort());
    assert.equal(corpus.length + notExpressible.length, 70);
  });

  for (const t of trials) {
    const differs = SIGSTORE_GO_DIFFERS[t.name];
    const expected = t.verifies ? 'verifies' : 'fails';
    it(`${t.name} ${expected}${differs === undefined ? ' in both' : ` in Portcullis only: ${differs}`}`, () => {
      const v = verdicts.get(t.name);
      assert.ok(v, 'not run');
      // 0 is "Verification successful", 1 a refusal; anything else (a Go panic, a flag error, a timeout) is no verdict.
      assert.ok(v.theirs.code === 0 || v.theirs.code === 1, `${BINARY} exited ${v.theirs.code}: ${v.theirs.stderr}`);
      assert.equal(v.ours === 'verified', t.verifies, `Portcullis: ${v.ours}`);
      const theirs = v.theirs.code === 0;
      if (differs === undefined) assert.equal(theirs, t.verifies, `${BINARY}: ${v.theirs.stderr.trim()}`);
      else assert.equal(theirs, !t.verifies, `${BINARY} now agrees (${v.theirs.stderr.trim()}): drop it from the list`);
    });
  }

  it('disagrees with sigstore-go on exactly the named cases', (t) => {
    const disagreements = trials.filter((c) => {
      const v = verdicts.get(c.name);
      return v === undefined || (v.theirs.code === 0) !== (v.ours === 'verified');
    });
    assert.deepEqual(disagreements.map((c) => c.name).sort(), Object.keys(SIGSTORE_GO_DIFFERS).sort());
    const rekorV2Refusals = corpus.filter(
      (c) => !c.verifies && SIGSTORE_GO_DIFFERS[c.name] === undefined && hasRekorV2Entry(c.bundle),
    );
    t.diagnostic(
      `${trials.length - disagreements.length} of ${trials.length} verdicts agree ` +
        `(${rekorV2Refusals.length} of them refusals of Rekor v2 bundles, which sigstore-go 0.7.1 cannot verify at all); ` +
        `${disagreements.length} named disagreements; ${notExpressible.length} key-based cases not expressible`,
    );
  });
});
