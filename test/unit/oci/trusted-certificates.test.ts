import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tls from 'node:tls';
import { splitPem, trustedCertificates } from '../../../oci/registry-client/ca.js';

const pem = (n: number) => `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----`;

test("the first system bundle that exists is read, after Node's own roots; SSL_CERT_FILE wins", () => {
  const files: Record<string, string> = { '/b': `junk\n${pem(1)}\n${pem(2)}\n`, '/c': pem(3), '/env': pem(4) };
  const read = (p: string) => files[p];
  const got = trustedCertificates({ env: {}, bundles: ['/a', '/b', '/c'], read });
  assert.deepEqual(got.slice(0, tls.rootCertificates.length), [...tls.rootCertificates]);
  assert.deepEqual(got.slice(tls.rootCertificates.length), [pem(1), pem(2)]);
  const env = trustedCertificates({ env: { SSL_CERT_FILE: '/env' }, bundles: ['/b'], read });
  assert.deepEqual(env.slice(tls.rootCertificates.length), [pem(4)]);
});

test('NODE_EXTRA_CA_CERTS and extra certificates are added; duplicates once', () => {
  const read = (p: string) => (p === '/extra' ? pem(5) : undefined);
  const got = trustedCertificates({
    env: { NODE_EXTRA_CA_CERTS: '/extra' },
    bundles: [],
    read,
    extra: [pem(6), pem(5)],
  });
  assert.deepEqual(got.slice(tls.rootCertificates.length), [pem(5), pem(6)]);
  assert.deepEqual(splitPem('nothing here'), []);
});
