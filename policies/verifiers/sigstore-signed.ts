import { createHash, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { X509Certificate as SigstoreX509 } from '@sigstore/core';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import type { CosignSignatureEvidence, SigstoreSignedTrust } from '../model.js';

/**
 * containers-policy.json's `sigstoreSigned` beyond plain keys, with containers/image's
 * semantics (signature/policy_eval_sigstore.go): a Rekor SET checked against the
 * configured Rekor keys (`rekorPublicKeyPath(s)`/`Data(s)`), a Fulcio certificate
 * checked against the configured CA at the time the SET vouches for (`fulcio`: no SCT,
 * the OIDC issuer extension and an e-mail SAN compared exactly), or an X.509
 * certificate checked against configured roots and intermediates now (`pki`). It
 * returns the key that must verify the payload, or why there is none.
 */
export type SigningKey =
  | { readonly ok: true; readonly key: KeyObject; readonly signer: string; readonly label: string }
  | { readonly ok: false; readonly message: string };

const MAX_TEXT = 64 * 1024;
const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const OIDC_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1';

/**
 * The Rekor SET annotation (`dev.sigstore.cosign/bundle`) verified by one of `rekorKeys`
 * and matching this signature: a hashedrekord 0.0.1 entry of exactly this key or
 * certificate (`keyOrCertDer`), this signature and this payload's sha256. Its time.
 */
export function verifyRekorSet(
  rekorKeys: readonly KeyObject[],
  setText: string | undefined,
  keyOrCertDer: Buffer,
  base64Signature: string,
  payload: Uint8Array,
): Date | string {
  if (setText === undefined) return 'missing dev.sigstore.cosign/bundle annotation (a Rekor SET is required)';
  const doc = parse(setText);
  if (!isObject(doc) || !exactly(doc, ['SignedEntryTimestamp', 'Payload']) || !isObject(doc.Payload))
    return 'the Rekor SET annotation is not {SignedEntryTimestamp, Payload}';
  const p = doc.Payload;
  if (!exactly(p, ['body', 'integratedTime', 'logIndex', 'logID'])) return 'the Rekor SET payload has other fields';
  const { body, integratedTime, logIndex, logID } = p;
  if (
    typeof body !== 'string' ||
    !Number.isSafeInteger(integratedTime) ||
    !Number.isSafeInteger(logIndex) ||
    typeof logID !== 'string'
  )
    return 'the Rekor SET payload has fields of the wrong types';
  if (typeof doc.SignedEntryTimestamp !== 'string') return 'the SignedEntryTimestamp is not base64';
  // RFC 8785 canonical form: keys sorted, no spaces (strings and integers serialise as JSON.stringify does).
  const canonical = JSON.stringify({ body, integratedTime, logID, logIndex });
  const set = Buffer.from(doc.SignedEntryTimestamp, 'base64');
  const signedByRekor = rekorKeys.some((k) => {
    try {
      return verify('sha256', Buffer.from(canonical), { key: k, dsaEncoding: 'der' }, set);
    } catch {
      return false;
    }
  });
  if (!signedByRekor) return 'the Rekor SET is not signed by a configured Rekor key';
  const entry = parse(Buffer.from(body, 'base64').toString('utf8'));
  if (!isObject(entry) || entry.kind !== 'hashedrekord' || entry.apiVersion !== '0.0.1' || !isObject(entry.spec))
    return 'the Rekor entry is not a hashedrekord 0.0.1';
  const { signature, data } = entry.spec;
  const logged = isObject(signature) && isObject(signature.publicKey) ? signature.publicKey.content : undefined;
  const loggedDer = typeof logged === 'string' ? pemBody(Buffer.from(logged, 'base64').toString('utf8')) : undefined;
  if (loggedDer === undefined || !loggedDer.equals(keyOrCertDer))
    return 'the Rekor entry is for another key or certificate';
  const content = isObject(signature) ? signature.content : undefined;
  if (typeof content !== 'string' || !Buffer.from(content, 'base64').equals(Buffer.from(base64Signature, 'base64')))
    return 'the Rekor entry is for another signature';
  const hash = isObject(data) && isObject(data.hash) ? data.hash : undefined;
  if (hash?.algorithm !== 'sha256' || hash.value !== createHash('sha256').update(payload).digest('hex'))
    return 'the Rekor entry is for another payload';
  return new Date((integratedTime as number) * 1000);
}

/** The key that must verify this signature under `trust`, with who it stands for. */
export function signingKeyFor(
  sig: CosignSignatureEvidence,
  trust: SigstoreSignedTrust,
  keys: readonly { key: KeyObject; fingerprint: string; source: string }[],
): SigningKey[] {
  if (trust.fulcio) {
    const f = trust.fulcio;
    const leaf = readLeaf(sig.certificate);
    if (typeof leaf === 'string') return [{ ok: false, message: leaf }];
    const at = verifyRekorSet(trust.rekorKeys ?? [], sig.rekorBundle, leaf.raw, sig.signature, sig.payload);
    if (typeof at === 'string') return [{ ok: false, message: at }];
    const chain = verifyChain(leaf, sig.chain, f.roots, [], at);
    if (chain !== undefined) return [{ ok: false, message: chain }];
    const issuer = extensionText(leaf, OIDC_ISSUER_V1);
    if (issuer !== f.oidcIssuer)
      return [
        {
          ok: false,
          message: `unexpected Fulcio OIDC issuer ${JSON.stringify(issuer ?? null)}, not ${JSON.stringify(f.oidcIssuer)}`,
        },
      ];
    const emails = sans(leaf, 'email');
    if (!emails.includes(f.subjectEmail))
      return [
        {
          ok: false,
          message: `required e-mail ${f.subjectEmail} not in the certificate (${emails.join(', ') || 'none'})`,
        },
      ];
    return [
      {
        ok: true,
        key: leaf.publicKey,
        signer: `fulcio:${f.oidcIssuer}\n${f.subjectEmail}`,
        label: `Fulcio certificate for ${f.subjectEmail} (issuer ${f.oidcIssuer}), logged in Rekor at ${at.toISOString()}`,
      },
    ];
  }
  if (trust.pki) {
    const p = trust.pki;
    const leaf = readLeaf(sig.certificate);
    if (typeof leaf === 'string') return [{ ok: false, message: leaf }];
    const chain = verifyChain(leaf, sig.chain, p.roots, p.intermediates, trust.now());
    if (chain !== undefined) return [{ ok: false, message: chain }];
    if (p.subjectEmail !== undefined && !sans(leaf, 'email').includes(p.subjectEmail))
      return [{ ok: false, message: `required e-mail ${p.subjectEmail} not in the certificate` }];
    if (p.subjectHostname !== undefined && !hostnameMatches(leaf, p.subjectHostname))
      return [{ ok: false, message: `the certificate is not for host ${p.subjectHostname}` }];
    const fp = createHash('sha256').update(leaf.raw).digest('hex');
    return [
      {
        ok: true,
        key: leaf.publicKey,
        signer: `pki:${fp}`,
        label: `certificate ${leaf.subject.replace(/\n/g, ', ')} (sha256:${fp.slice(0, 16)}…) verified against the configured CA`,
      },
    ];
  }
  // Keys; with Rekor keys, the SET must name the key that signed.
  return keys.map((k) => {
    if (trust.rekorKeys !== undefined) {
      const der = k.key.export({ type: 'spki', format: 'der' });
      const at = verifyRekorSet(trust.rekorKeys, sig.rekorBundle, der, sig.signature, sig.payload);
      if (typeof at === 'string') return { ok: false as const, message: `${k.source}: ${at}` };
    }
    return {
      ok: true as const,
      key: k.key,
      signer: `cosign:${k.fingerprint}`,
      label: `cosign signature by ${k.source} (sha256:${k.fingerprint.slice(0, 16)}…)`,
    };
  });
}

function parse(text: string): unknown {
  if (text.length > MAX_TEXT) return undefined;
  try {
    return parseStrictJson(Buffer.from(text, 'utf8'), { maxDepth: 12 });
  } catch {
    return undefined;
  }
}

function exactly(o: Record<string, unknown>, keys: readonly string[]): boolean {
  const have = Object.keys(o);
  return have.length === keys.length && keys.every((k) => k in o);
}

/** The DER of the one PEM block in `text` (a key or a certificate), or undefined. */
function pemBody(text: string): Buffer | undefined {
  const m = /^-----BEGIN ([A-Z ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\r?\n?$/.exec(text);
  return m ? Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64') : undefined;
}

/** PEM certificates, in order; undefined when the text holds anything else. */
export function readCertificates(text: string): X509Certificate[] | undefined {
  if (text.length > MAX_TEXT) return undefined;
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g) ?? [];
  const rest = blocks.reduce((t, b) => t.replace(b, ''), text);
  if (blocks.length === 0 || blocks.length > 16 || rest.trim() !== '') return undefined;
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch {
    return undefined;
  }
}

function readLeaf(pem: string | undefined): X509Certificate | string {
  if (pem === undefined) return 'missing dev.sigstore.cosign/certificate annotation';
  const certs = readCertificates(pem);
  if (certs === undefined) return 'the certificate annotation is not PEM certificates';
  if (certs.length !== 1) return 'unexpected multiple certificates in the certificate annotation';
  return certs[0] as X509Certificate;
}

/**
 * The leaf chains to one of `roots` at `at`: each certificate valid then, each issuer
 * a CA that signed it; intermediates from the chain annotation (all but its last
 * certificate, as containers/image takes them) and `extra`; the leaf for code signing.
 */
function verifyChain(
  leaf: X509Certificate,
  chainPem: string | undefined,
  roots: readonly X509Certificate[],
  extra: readonly X509Certificate[],
  at: Date,
): string | undefined {
  let intermediates = [...extra];
  if (chainPem !== undefined && chainPem !== '') {
    const chain = readCertificates(chainPem);
    if (chain === undefined) return 'the certificate chain annotation is not PEM certificates';
    intermediates = [...intermediates, ...chain.slice(0, -1)];
  }
  const eku = leaf.keyUsage;
  if (eku !== undefined && !eku.includes(CODE_SIGNING)) return 'the certificate is not for code signing';
  const valid = (c: X509Certificate) =>
    Date.parse(c.validFrom) <= at.getTime() && at.getTime() <= Date.parse(c.validTo);
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    if (!valid(current))
      return `the certificate ${current.subject.replace(/\n/g, ', ')} was not valid at ${at.toISOString()}`;
    const root = roots.find((r) => issued(r, current));
    if (root) return valid(root) ? undefined : `the CA certificate was not valid at ${at.toISOString()}`;
    const next = intermediates.find((c) => c !== current && issued(c, current));
    if (!next) return 'the certificate does not chain to a configured CA';
    current = next;
  }
  return 'the certificate chain is too long';
}

function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  try {
    return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function sans(cert: X509Certificate, kind: 'email' | 'DNS' | 'IP Address'): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith(`${kind}:`))
    .map((s) => s.slice(kind.length + 1));
}

function hostnameMatches(cert: X509Certificate, host: string): boolean {
  if (/^[0-9.]+$|:/.test(host)) return sans(cert, 'IP Address').includes(host);
  return cert.checkHost(host, { subject: 'never', wildcards: true, partialWildcards: false }) !== undefined;
}

/** The value of a certificate extension holding raw text (Fulcio's 1.1 issuer); undefined when absent or repeated. */
function extensionText(cert: X509Certificate, oid: string): string | undefined {
  try {
    const parsed = SigstoreX509.parse(cert.raw);
    const count = parsed.extensions.filter((e) => e.subs[0]?.toOID() === oid).length;
    return count === 1 ? parsed.extension(oid)?.value.toString('latin1') : undefined;
  } catch {
    return undefined;
  }
}
