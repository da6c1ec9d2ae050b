import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';

/**
 * The certificate authorities a TLS connection trusts: Node's bundled roots, the
 * machine's own store (where `update-ca-certificates` and its kin put a local CA —
 * Node 20 never reads it by itself), NODE_EXTRA_CA_CERTS, and any given here.
 * The machine's store is `tls.getCACertificates('system')` where Node has it (22.15
 * and later), else the file `SSL_CERT_FILE` names, else the first distribution
 * bundle that exists.
 */
export const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Alpine, Arch
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL, CentOS
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // RHEL 7+
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/ssl/cert.pem', // Alpine, macOS
];

const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;

export interface TrustOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** More CA certificates (PEM), e.g. secure-run's --ca. */
  readonly extra?: readonly string[];
  /** For tests: the bundle paths to look at, and how to read them. */
  readonly bundles?: readonly string[];
  readonly read?: (path: string) => string | undefined;
}

export function trustedCertificates(opts: TrustOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const read = opts.read ?? readSmall;
  const out = [...tls.rootCertificates];
  const system = (tls as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  if (typeof system === 'function' && opts.bundles === undefined && env.SSL_CERT_FILE === undefined) {
    out.push(...system('system'));
  } else {
    const files = env.SSL_CERT_FILE ? [env.SSL_CERT_FILE] : (opts.bundles ?? SYSTEM_BUNDLES);
    for (const f of files) {
      const text = read(f);
      if (text === undefined) continue;
      out.push(...splitPem(text));
      break;
    }
  }
  if (env.NODE_EXTRA_CA_CERTS) out.push(...splitPem(read(env.NODE_EXTRA_CA_CERTS) ?? ''));
  for (const pem of opts.extra ?? []) out.push(...splitPem(pem));
  return [...new Set(out)];
}

/** The PEM certificates in a text (anything between them is ignored). */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function readSmall(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > MAX_BUNDLE_BYTES ? undefined : text;
  } catch {
    return undefined;
  }
}
