import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { publicGoodTrust } from '../../policies/loader.js';
import { parsePublicKey } from '../../policies/keys.js';
import { loadTrustedRoot } from '../../policies/verifiers/cosign-keyless.js';
import { parseStatement, subjectFor } from '../../policies/verifiers/in-toto.js';
import { readBundle, verifySigstoreBundle } from '../../policies/verifiers/sigstore-bundle.js';
import { fixturePath } from './fixtures.js';

/**
 * The sigstore-conformance bundle-verification corpus (copied under
 * test/fixtures/sigstore/conformance, see its README.md and SOURCE.md) and how
 * Portcullis decides one of its cases.
 */
export const CORPUS = fixturePath('sigstore/conformance/');
const IDENTITY =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
const ISSUER = 'https://token.actions.githubusercontent.com';

/** One case's files, with the corpus defaults filled in. */
export interface ConformanceCase {
  readonly name: string;
  readonly dir: string;
  /** A name ending in `_fail` means verification must fail. */
  readonly verifies: boolean;
  readonly bundle: string;
  readonly artifact: string;
  /** The case's own trusted root; absent: the public-good one. */
  readonly trustedRoot: string | undefined;
  /** Present: verify with this key instead of an identity. */
  readonly key: string | undefined;
  readonly identity: string;
  readonly issuer: string;
}

export function conformanceCases(): ConformanceCase[] {
  return readdirSync(CORPUS, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => conformanceCase(join(CORPUS, d.name)));
}

export function conformanceCase(dir: string): ConformanceCase {
  const file = (name: string) => join(dir, name);
  const optional = (name: string) => (existsSync(file(name)) ? file(name) : undefined);
  const text = (name: string, fallback: string) =>
    existsSync(file(name)) ? readFileSync(file(name), 'utf8').trim() : fallback;
  const name = dir.replace(/\/+$/, '').split('/').pop() ?? dir;
  return {
    name,
    dir,
    verifies: !name.endsWith('_fail'),
    bundle: file('bundle.sigstore.json'),
    artifact: optional('artifact') ?? join(CORPUS, 'a.txt'),
    trustedRoot: optional('trusted_root.json'),
    key: optional('key.pub'),
    identity: text('identity', IDENTITY),
    issuer: text('issuer', ISSUER),
  };
}

/**
 * Portcullis's decision on a case: 'verified', or why not. A case verifies when the
 * trusted root loads, the bundle verifies (keylessly, by the case's identity and
 * issuer, or with its key.pub), and a DSSE statement names the artifact's digest.
 */
export function outcome(dir: string): string {
  const c = conformanceCase(dir);
  let trust = publicGoodTrust();
  if (c.trustedRoot !== undefined) {
    const loaded = loadTrustedRoot(JSON.parse(readFileSync(c.trustedRoot, 'utf8')), 'case root');
    if (typeof loaded === 'string') return `root: ${loaded}`;
    trust = loaded;
  }
  const artifact = readFileSync(c.artifact);
  const bundle = readBundle(readFileSync(c.bundle));
  if (typeof bundle === 'string') return `bundle: ${bundle}`;
  let keys;
  if (c.key !== undefined) {
    const key = parsePublicKey(readFileSync(c.key, 'utf8'), 'key.pub');
    if (typeof key === 'string') return `key: ${key}`;
    keys = [key];
  }
  const v = verifySigstoreBundle(bundle, artifact, trust, keys);
  if (!v.ok) return `${v.code}: ${v.message}`;
  if (v.signer.kind === 'keyless') {
    if (v.signer.subject !== c.identity) return `identity ${v.signer.subject}`;
    if (v.signer.issuer !== c.issuer) return `issuer ${v.signer.issuer}`;
  }
  if (v.content.kind === 'dsse') {
    const statement = parseStatement(v.content.payloadType, v.content.payload);
    if (typeof statement === 'string') return `statement: ${statement}`;
    const digest = `sha256:${createHash('sha256').update(artifact).digest('hex')}`;
    if (!subjectFor(statement, digest)) return 'the statement does not name the artifact';
  }
  return 'verified';
}
