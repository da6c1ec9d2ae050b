import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { digestOf } from '../../../oci/digest.js';
import { LoadError } from '../../../policies/errors.js';
import { evaluate } from '../../../policies/evaluator.js';
import { loadPolicyFile } from '../../../policies/loader.js';
import { payloadFor, signJws, testCert } from '../../helpers/notation-signer.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * Notation's own trustpolicy.oci.json and trust-store directory, loaded as they are:
 * statements by exact repository, "*" as the default, skip as accept-anything, and the
 * constraints Notation puts on a trust policy reported at load with line and column.
 */
const root = testCert({ subject: { C: 'US', ST: 'WA', O: 'wabbit-networks.io', CN: 'Root' }, ca: true });
const signer = testCert({ subject: { C: 'US', ST: 'WA', O: 'wabbit-networks.io', CN: 'Builder' }, issuer: root });

function notationDir(policy: unknown): { file: string; cleanup: () => void } {
  const dir = tempDir();
  const store = join(dir.path, 'truststore/x509/ca/wabbit-networks');
  mkdirSync(join(store, 'ignored'), { recursive: true });
  writeFileSync(join(store, 'root.crt'), root.pem);
  const file = join(dir.path, 'trustpolicy.oci.json');
  writeFileSync(file, typeof policy === 'string' ? policy : JSON.stringify(policy, null, 2));
  return { file, cleanup: dir.cleanup };
}

const statement = (o: Record<string, unknown> = {}) => ({
  name: 'wabbit',
  registryScopes: ['reg.test/net-monitor'],
  signatureVerification: { level: 'strict' },
  trustStores: ['ca:wabbit-networks'],
  trustedIdentities: ['x509.subject: C=US, ST=WA, O=wabbit-networks.io'],
  ...o,
});

test('trustpolicy.oci.json with its trust store decides by exact repository, "*" and skip', async () => {
  const dir = notationDir({
    version: '1.0',
    trustPolicies: [
      statement(),
      { name: 'unsigned', registryScopes: ['reg.test/unsigned'], signatureVerification: { level: 'skip' } },
      statement({ name: 'global', registryScopes: ['*'], signatureVerification: { level: 'audit' } }),
    ],
  });
  try {
    const policy = await loadPolicyFile(dir.file);
    assert.equal(policy.format, 'trustpolicy.oci.json');
    assert.ok(policy.warnings?.length, 'the subdirectory of the named store is reported');
    assert.deepEqual(policy.keyFiles, ['truststore/x509/ca/wabbit-networks/root.crt']);
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    const digest = digestOf(manifest);
    const envelope = signJws([signer, root], payloadFor(digest.text, manifest.length));
    const evidence = (sigs: Buffer[]) => ({
      cosign: [],
      manifest,
      notation: sigs.map((e) => ({ source: 'r', mediaType: 'application/jose+json', envelope: e })),
      problems: [],
    });
    assert.equal(
      (await evaluate(policy, { name: 'reg.test/net-monitor', digest }, evidence([envelope]))).allowed,
      true,
    );
    const unsigned = await evaluate(policy, { name: 'reg.test/net-monitor', digest }, evidence([]));
    assert.equal(unsigned.denial, 'signature.missing');
    assert.equal(
      (await evaluate(policy, { name: 'reg.test/net-monitor/sub', digest }, evidence([]))).denial,
      'signature.missing',
      'below a scope is not the scope: the global statement applies',
    );
    assert.equal((await evaluate(policy, { name: 'reg.test/unsigned', digest }, evidence([]))).allowed, true);
  } finally {
    dir.cleanup();
  }
  const noGlobal = notationDir({ version: '1.0', trustPolicies: [statement()] });
  try {
    const policy = await loadPolicyFile(noGlobal.file);
    const d = await evaluate(
      policy,
      { name: 'reg.test/other', digest: digestOf(Buffer.from('x')) },
      { cosign: [], problems: [] },
    );
    assert.equal(d.denial, 'policy.rejected', 'no applicable trust policy: refused, as Notation refuses it');
  } finally {
    noGlobal.cleanup();
  }
});

test('what Notation refuses in a trust policy is a load error at its line', async () => {
  const cases: [string, unknown][] = [
    ['version', { version: '2.0', trustPolicies: [statement()] }],
    [
      'identity without O',
      { version: '1.0', trustPolicies: [statement({ trustedIdentities: ['x509.subject: C=US, ST=WA'] })] },
    ],
    [
      'overlapping identities',
      {
        version: '1.0',
        trustPolicies: [
          statement({ trustedIdentities: ['x509.subject: C=US, ST=WA, O=a', 'x509.subject: C=US, ST=WA, O=a, OU=b'] }),
        ],
      },
    ],
    [
      '"*" with others',
      { version: '1.0', trustPolicies: [statement({ trustedIdentities: ['*', 'x509.subject: C=US, ST=WA, O=a'] })] },
    ],
    [
      'skip with trust stores',
      { version: '1.0', trustPolicies: [statement({ signatureVerification: { level: 'skip' } })] },
    ],
    [
      'skip overridden',
      {
        version: '1.0',
        trustPolicies: [
          statement({
            signatureVerification: { level: 'skip', override: { expiry: 'log' } },
            trustStores: undefined,
            trustedIdentities: undefined,
          }),
        ],
      },
    ],
    [
      'integrity overridden',
      {
        version: '1.0',
        trustPolicies: [statement({ signatureVerification: { level: 'strict', override: { integrity: 'log' } } })],
      },
    ],
    [
      'two globals',
      {
        version: '1.0',
        trustPolicies: [statement({ registryScopes: ['*'] }), statement({ name: 'b', registryScopes: ['*'] })],
      },
    ],
    ['a scope twice', { version: '1.0', trustPolicies: [statement(), statement({ name: 'b' })] }],
    ['a scope with a tag', { version: '1.0', trustPolicies: [statement({ registryScopes: ['reg.test/app:1'] })] }],
    ['a missing store', { version: '1.0', trustPolicies: [statement({ trustStores: ['ca:nowhere'] })] }],
    ['a store name with a path', { version: '1.0', trustPolicies: [statement({ trustStores: ['ca:../x'] })] }],
    [
      'a tsa store',
      { version: '1.0', trustPolicies: [statement({ trustStores: ['ca:wabbit-networks', 'tsa:wabbit-networks'] })] },
    ],
    ['no identities', { version: '1.0', trustPolicies: [statement({ trustedIdentities: undefined })] }],
    ['an unknown field', { version: '1.0', trustPolicies: [statement({ trustedIdentity: ['*'] })] }],
    ['a trailing comma', `{"version": "1.0", "trustPolicies": [],}`],
  ];
  for (const [what, policy] of cases) {
    const dir = notationDir(policy);
    try {
      await assert.rejects(
        loadPolicyFile(dir.file),
        (err: unknown) => {
          assert.ok(err instanceof LoadError, what);
          assert.equal(err.code, 'POLICY_INVALID', what);
          assert.ok(
            err.diagnostics.every((d) => d.line >= 1),
            what,
          );
          return true;
        },
        what,
      );
    } finally {
      dir.cleanup();
    }
  }
});
