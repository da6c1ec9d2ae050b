import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publicGoodTrust } from '../../policies/loader.js';
import { parsePublicKey } from '../../policies/keys.js';
import { loadTrustedRoot } from '../../policies/verifiers/cosign-keyless.js';
import { parseStatement, subjectFor } from '../../policies/verifiers/in-toto.js';
import { readBundle, verifySigstoreBundle } from '../../policies/verifiers/sigstore-bundle.js';

/**
 * The sigstore-conformance bundle-verification corpus (70 cases, copied under
 * test/fixtures/sigstore/conformance): every case must give its expected outcome,
 * Rekor v2 included. A case verifies when the trusted root loads, the bundle
 * verifies (keylessly, by the case's identity and issuer, or with its key.pub), and
 * a DSSE statement names the artifact's digest.
 */
export const CORPUS = fileURLToPath(new URL('../../../test/fixtures/sigstore/conformance/', import.meta.url));
const IDENTITY =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
const ISSUER = 'https://token.actions.githubusercontent.com';

export function outcome(dir: string): string {
  const file = (name: string) => join(dir, name);
  const text = (name: string, fallback: string) =>
    existsSync(file(name)) ? readFileSync(file(name), 'utf8').trim() : fallback;
  let trust = publicGoodTrust();
  if (existsSync(file('trusted_root.json'))) {
    const loaded = loadTrustedRoot(JSON.parse(readFileSync(file('trusted_root.json'), 'utf8')), 'case root');
    if (typeof loaded === 'string') return `root: ${loaded}`;
    trust = loaded;
  }
  const artifact = readFileSync(existsSync(file('artifact')) ? file('artifact') : join(CORPUS, 'a.txt'));
  const bundle = readBundle(readFileSync(file('bundle.sigstore.json')));
  if (typeof bundle === 'string') return `bundle: ${bundle}`;
  let keys;
  if (existsSync(file('key.pub'))) {
    const key = parsePublicKey(readFileSync(file('key.pub'), 'utf8'), 'key.pub');
    if (typeof key === 'string') return `key: ${key}`;
    keys = [key];
  }
  const v = verifySigstoreBundle(bundle, artifact, trust, keys);
  if (!v.ok) return `${v.code}: ${v.message}`;
  if (v.signer.kind === 'keyless') {
    if (v.signer.subject !== text('identity', IDENTITY)) return `identity ${v.signer.subject}`;
    if (v.signer.issuer !== text('issuer', ISSUER)) return `issuer ${v.signer.issuer}`;
  }
  if (v.content.kind === 'dsse') {
    const statement = parseStatement(v.content.payloadType, v.content.payload);
    if (typeof statement === 'string') return `statement: ${statement}`;
    const digest = `sha256:${createHash('sha256').update(artifact).digest('hex')}`;
    if (!subjectFor(statement, digest)) return 'the statement does not name the artifact';
  }
  return 'verified';
}
