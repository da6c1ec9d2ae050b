import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

/**
 * A test PKI and signer built to the Notary Project signature specification: certificates
 * with the extensions it requires (or violating them on purpose), and JWS and COSE_Sign1
 * envelopes signed with RSASSA-PSS (salt length = hash length), as Notation signs.
 */
export interface TestCert {
  readonly der: Buffer;
  readonly pem: string;
  readonly key: KeyObject;
  readonly forgeCert: forge.pki.Certificate;
  readonly forgeKey: forge.pki.rsa.PrivateKey;
}

export interface CertOptions {
  readonly subject: Readonly<Record<string, string>>;
  readonly issuer?: TestCert | undefined;
  readonly ca?: boolean;
  readonly days?: readonly [number, number];
  readonly eku?: 'codeSigning' | 'serverAuth' | 'timeStamping';
  /** Whether the extended key usage is critical (default: only for timeStamping, as RFC 3161 asks). */
  readonly ekuCritical?: boolean;
  readonly crl?: boolean;
  readonly criticalKeyUsage?: boolean;
  /** A CA's pathLenConstraint. */
  readonly pathLen?: number;
  /** A leaf for keyEncipherment instead of digitalSignature. */
  readonly usage?: 'keyEncipherment';
}

let serial = 1;
const keyPool: { key: KeyObject; forgeKey: forge.pki.rsa.PrivateKey; forgePub: forge.pki.rsa.PublicKey }[] = [];

function rsaKey(i: number) {
  while (keyPool.length <= i) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    keyPool.push({
      key: privateKey,
      forgeKey: forge.pki.privateKeyFromPem(
        privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      ) as forge.pki.rsa.PrivateKey,
      forgePub: forge.pki.publicKeyFromPem(
        publicKey.export({ type: 'spki', format: 'pem' }) as string,
      ) as forge.pki.rsa.PublicKey,
    });
  }
  return keyPool[i] as (typeof keyPool)[number];
}

export function testCert(o: CertOptions): TestCert {
  const k = rsaKey(serial % 4);
  const cert = forge.pki.createCertificate();
  cert.publicKey = k.forgePub;
  cert.serialNumber = (serial++).toString(16).padStart(2, '0');
  const [from, to] = o.days ?? [-1, 30];
  cert.validity.notBefore = new Date(Date.now() + from * 86_400_000);
  cert.validity.notAfter = new Date(Date.now() + to * 86_400_000);
  const attrs = Object.entries(o.subject).map(([shortName, value]) => ({ shortName, value }));
  cert.setSubject(attrs);
  cert.setIssuer(o.issuer ? o.issuer.forgeCert.subject.attributes : attrs);
  const exts: object[] = o.ca
    ? [
        {
          name: 'basicConstraints',
          cA: true,
          critical: true,
          ...(o.pathLen !== undefined ? { pathLenConstraint: o.pathLen } : {}),
        },
        { name: 'keyUsage', keyCertSign: true, critical: true },
      ]
    : [
        o.usage === 'keyEncipherment'
          ? { name: 'keyUsage', keyEncipherment: true, critical: true }
          : { name: 'keyUsage', digitalSignature: true, critical: o.criticalKeyUsage ?? true },
      ];
  if (o.eku) exts.push({ name: 'extKeyUsage', [o.eku]: true, critical: o.ekuCritical ?? o.eku === 'timeStamping' });
  if (o.crl) exts.push({ name: 'cRLDistributionPoints', altNames: [{ type: 6, value: 'http://127.0.0.1:9/ca.crl' }] });
  cert.setExtensions(exts);
  cert.sign(o.issuer ? o.issuer.forgeKey : k.forgeKey, forge.md.sha256.create());
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
  return { der, pem: forge.pki.certificateToPem(cert), key: k.key, forgeCert: cert, forgeKey: k.forgeKey };
}

export interface SignOptions {
  readonly scheme?: 'notary.x509' | 'notary.x509.signingAuthority';
  readonly expiry?: Date;
  /** Extra protected attributes, and which of them to mark critical. */
  readonly extra?: Readonly<Record<string, string>>;
  readonly critical?: readonly string[];
  readonly alg?: string;
  /** A timestamp authority's countersignature over the signature bytes (timestamp-authority.ts). */
  readonly countersign?: (signature: Buffer) => Buffer;
}

/** The Notary Project payload for a manifest. */
export function payloadFor(
  digest: string,
  size: number,
  mediaType = 'application/vnd.oci.image.manifest.v1+json',
): Buffer {
  return Buffer.from(JSON.stringify({ targetArtifact: { mediaType, digest, size } }));
}

function pss(key: KeyObject, data: Buffer): Buffer {
  return sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
}

export function signJws(chain: readonly TestCert[], payload: Buffer, o: SignOptions = {}): Buffer {
  const scheme = o.scheme ?? 'notary.x509';
  const header: Record<string, unknown> = {
    alg: o.alg ?? 'PS256',
    crit: ['io.cncf.notary.signingScheme', ...(o.critical ?? [])],
    cty: 'application/vnd.cncf.notary.payload.v1+json',
    'io.cncf.notary.signingScheme': scheme,
    ...(scheme === 'notary.x509'
      ? { 'io.cncf.notary.signingTime': new Date().toISOString() }
      : { 'io.cncf.notary.authenticSigningTime': new Date().toISOString() }),
    ...(o.extra ?? {}),
  };
  if (scheme !== 'notary.x509') (header['crit'] as string[]).push('io.cncf.notary.authenticSigningTime');
  if (o.expiry) {
    header['io.cncf.notary.expiry'] = o.expiry.toISOString();
    (header['crit'] as string[]).push('io.cncf.notary.expiry');
  }
  const protectedText = Buffer.from(JSON.stringify(header)).toString('base64url');
  const payloadText = payload.toString('base64url');
  const signature = pss((chain[0] as TestCert).key, Buffer.from(`${protectedText}.${payloadText}`));
  return Buffer.from(
    JSON.stringify({
      payload: payloadText,
      protected: protectedText,
      header: {
        x5c: chain.map((c) => c.der.toString('base64')),
        'io.cncf.notary.signingAgent': 'portcullis-test',
        ...(o.countersign ? { 'io.cncf.notary.timestampSignature': o.countersign(signature).toString('base64') } : {}),
      },
      signature: signature.toString('base64url'),
    }),
  );
}

export function signCose(chain: readonly TestCert[], payload: Buffer, o: SignOptions = {}): Buffer {
  const scheme = o.scheme ?? 'notary.x509';
  const now = Math.floor(Date.now() / 1000);
  const crit: string[] = ['io.cncf.notary.signingScheme', ...(o.critical ?? [])];
  const h = new Map<number | string, Cbor>([
    [1, -37],
    [2, crit],
    [3, 'application/vnd.cncf.notary.payload.v1+json'],
    ['io.cncf.notary.signingScheme', scheme],
  ]);
  if (scheme === 'notary.x509') h.set('io.cncf.notary.signingTime', { tag: 1, value: now });
  else {
    h.set('io.cncf.notary.authenticSigningTime', { tag: 1, value: now });
    crit.push('io.cncf.notary.authenticSigningTime');
  }
  if (o.expiry) {
    h.set('io.cncf.notary.expiry', { tag: 1, value: Math.floor(o.expiry.getTime() / 1000) });
    crit.push('io.cncf.notary.expiry');
  }
  for (const [k, v] of Object.entries(o.extra ?? {})) h.set(k, v);
  const protectedBytes = encode(h);
  const toSign = encode(['Signature1', protectedBytes, Buffer.alloc(0), payload]);
  const signature = pss((chain[0] as TestCert).key, toSign);
  const unprotected = new Map<number | string, Cbor>([[33, chain.map((c) => c.der)]]);
  if (o.countersign) unprotected.set('io.cncf.notary.timestampSignature', o.countersign(signature));
  return encode({ tag: 18, value: [protectedBytes, unprotected, payload, signature] });
}

type Cbor = number | string | Buffer | Cbor[] | Map<number | string, Cbor> | { tag: number; value: Cbor };

function head(major: number, n: number): Buffer {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = m | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

/** A definite-length CBOR encoder for the values above. */
export function encode(v: Cbor): Buffer {
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'string') return Buffer.concat([head(3, Buffer.byteLength(v)), Buffer.from(v)]);
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(encode)]);
  if (v instanceof Map) return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [encode(k), encode(x)])]);
  return Buffer.concat([head(6, v.tag), encode(v.value)]);
}
