import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import forge from 'node-forge';
import { USER_NAME } from './auth/client-auth.js';

/**
 * `portcullis init [DIR]`: a starter configuration and policy, the gateway's
 * attestation signing key (ECDSA P-256), and a local CA with a TLS server
 * certificate for the gateway. Private keys are written 0600; existing files are
 * never overwritten. The CA key is discarded after signing unless `keepCaKey`.
 */
export interface InitResult {
  readonly dir: string;
  readonly files: readonly string[];
  readonly caCert: string;
}

const DAY = 24 * 60 * 60 * 1000;

/** A refusal of `init` or `cert`, said in a sentence (the CLI prints it without a stack). */
export class InitError extends Error {
  constructor(
    readonly code: 'INIT_EXISTS' | 'NOT_INITIALISED' | 'CA_KEY_INVALID' | 'USER_INVALID',
    message: string,
  ) {
    super(message);
    this.name = 'InitError';
  }
}

function filesOf(dir: string) {
  return {
    config: join(dir, 'portcullis.yaml'),
    policy: join(dir, 'policy.yaml'),
    signingKey: join(dir, 'keys', 'gateway.key'),
    signingPub: join(dir, 'keys', 'gateway.pub'),
    caKey: join(dir, 'tls', 'ca.key'),
    caCert: join(dir, 'tls', 'ca.crt'),
    serverKey: join(dir, 'tls', 'server.key'),
    serverCert: join(dir, 'tls', 'server.crt'),
  };
}

export function initGateway(
  dirArg: string,
  opts: { hosts?: readonly string[]; now?: Date; keepCaKey?: boolean } = {},
): InitResult {
  const dir = resolve(dirArg);
  const now = opts.now ?? new Date();
  const files = filesOf(dir);
  const existing = Object.values(files).filter((f) => existsSync(f));
  const written = Object.values(files).filter((f) => f !== files.caKey || opts.keepCaKey === true);
  if (existing.length > 0)
    throw new InitError(
      'INIT_EXISTS',
      `${dir} already holds ${existing.map((f) => f.slice(dir.length + 1)).join(', ')}: nothing was written (init never overwrites). For new host names in the TLS certificate: portcullis cert ${dirArg} --host NAME…`,
    );
  mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, 'tls'), { recursive: true, mode: 0o700 });

  const signing = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(files.signingKey, signing.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
    flag: 'wx',
  });
  writeFileSync(files.signingPub, signing.publicKey.export({ type: 'spki', format: 'pem' }), {
    mode: 0o644,
    flag: 'wx',
  });
  writeTls(files, hostsOf(opts.hosts), now, { keepCaKey: opts.keepCaKey === true, ca: undefined });
  writeFileSync(files.config, STARTER_CONFIG, { mode: 0o644, flag: 'wx' });
  writeFileSync(files.policy, STARTER_POLICY, { mode: 0o644, flag: 'wx' });
  return { dir, files: written, caCert: files.caCert };
}

export interface CertResult extends InitResult {
  /** True when a new CA had to be made (the old one's key was not kept): clients must trust the new ca.crt. */
  readonly newCa: boolean;
  readonly hosts: readonly string[];
}

/**
 * `portcullis cert [DIR] --host NAME…`: a new TLS server certificate for the gateway,
 * for localhost, the machine's name and every `--host`. Signed by the kept CA key
 * (`init --keep-ca-key`), so clients that trust tls/ca.crt keep trusting the gateway;
 * without one, by a new CA whose certificate replaces tls/ca.crt (clients must trust
 * it anew). The files are replaced whole (written aside, then renamed).
 */
export function renewCertificate(
  dirArg: string,
  opts: { hosts?: readonly string[]; now?: Date; keepCaKey?: boolean } = {},
): CertResult {
  const dir = resolve(dirArg);
  const files = filesOf(dir);
  if (!existsSync(join(dir, 'tls')))
    throw new InitError('NOT_INITIALISED', `${dir} has no tls/ directory: run portcullis init ${dirArg} first`);
  const ca = existsSync(files.caKey) ? keptCa(files) : undefined;
  const hosts = hostsOf(opts.hosts);
  writeTls(files, hosts, opts.now ?? new Date(), { keepCaKey: opts.keepCaKey === true, ca, replace: true });
  const written = [
    files.serverKey,
    files.serverCert,
    ...(ca ? [] : [files.caCert]),
    ...(!ca && opts.keepCaKey ? [files.caKey] : []),
  ];
  return { dir, files: written, caCert: files.caCert, newCa: ca === undefined, hosts };
}

type Ca = { key: forge.pki.rsa.PrivateKey; cert: forge.pki.Certificate };

/** The CA key kept by `init --keep-ca-key`, checked to be private and to be ca.crt's. */
function keptCa(files: ReturnType<typeof filesOf>): Ca {
  if ((statSync(files.caKey).mode & 0o077) !== 0)
    throw new InitError('CA_KEY_INVALID', `${files.caKey} is readable by others: chmod 600 it first`);
  let ca: Ca;
  try {
    ca = {
      key: forge.pki.privateKeyFromPem(readFileSync(files.caKey, 'utf8')) as forge.pki.rsa.PrivateKey,
      cert: forge.pki.certificateFromPem(readFileSync(files.caCert, 'utf8')),
    };
  } catch (err) {
    throw new InitError(
      'CA_KEY_INVALID',
      `${files.caKey} or ${files.caCert} cannot be read as a CA key and certificate: ${(err as Error).message}`,
    );
  }
  const pub = ca.cert.publicKey as forge.pki.rsa.PublicKey;
  if (pub.n?.compareTo(ca.key.n) !== 0 || pub.e?.compareTo(ca.key.e) !== 0)
    throw new InitError('CA_KEY_INVALID', `${files.caKey} is not the key of ${files.caCert}`);
  return ca;
}

/**
 * `portcullis client-cert [DIR] --user NAME`: a TLS client certificate for one user
 * (the subject's CN), signed by the CA kept with `init --keep-ca-key`, for a gateway
 * whose `tls.clientCa` is that CA's tls/ca.crt. Writes `<out>/<user>.key` (0600) and
 * `<user>.crt`; never overwrites.
 */
export function issueClientCertificate(
  dirArg: string,
  opts: { user: string; out?: string; days?: number; now?: Date },
): { key: string; cert: string; notAfter: Date } {
  const dir = resolve(dirArg);
  const files = filesOf(dir);
  if (!USER_NAME.test(opts.user))
    throw new InitError('USER_INVALID', `${opts.user.slice(0, 40)} is not a user name (letters, digits, . _ @ -)`);
  if (!existsSync(files.caCert))
    throw new InitError(
      'NOT_INITIALISED',
      `${dir} has no tls/ca.crt: run portcullis init ${dirArg} --keep-ca-key first`,
    );
  if (!existsSync(files.caKey))
    throw new InitError(
      'CA_KEY_INVALID',
      `${files.caKey} is not there: client certificates need the CA key kept (portcullis init --keep-ca-key, or portcullis cert --keep-ca-key for a new CA)`,
    );
  const ca = keptCa(files);
  const days = opts.days ?? 365;
  if (!Number.isInteger(days) || days < 1 || days > 825)
    throw new InitError('USER_INVALID', `--days ${days}: between 1 and 825`);
  const out = resolve(opts.out ?? join(dir, 'clients'));
  const key = join(out, `${opts.user}.key`);
  const cert = join(out, `${opts.user}.crt`);
  const existing = [key, cert].filter((f) => existsSync(f));
  if (existing.length > 0)
    throw new InitError('INIT_EXISTS', `${existing.join(', ')} already there: nothing was written`);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const now = opts.now ?? new Date();
  const pair = rsaKeyPair();
  const c = certificate({
    subject: [{ name: 'commonName', value: opts.user }],
    publicKey: pair.publicKey,
    signer: ca.key,
    issuer: ca.cert,
    now,
    days,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
    ],
  });
  writeFileSync(key, forge.pki.privateKeyToPem(pair.privateKey), { mode: 0o600, flag: 'wx' });
  writeFileSync(cert, forge.pki.certificateToPem(c), { mode: 0o644, flag: 'wx' });
  return { key, cert, notAfter: c.validity.notAfter };
}

function hostsOf(extra: readonly string[] | undefined): string[] {
  return [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...(extra ?? [])])];
}

/** The CA (made here unless given) and a server certificate for `hosts`. */
function writeTls(
  files: ReturnType<typeof filesOf>,
  hosts: readonly string[],
  now: Date,
  o: {
    keepCaKey: boolean;
    ca: { key: forge.pki.rsa.PrivateKey; cert: forge.pki.Certificate } | undefined;
    replace?: boolean;
  },
): void {
  // Replacing: every file is written aside first, then all are renamed into place.
  const pending: [string, string][] = [];
  const put = (path: string, text: string, mode: number) => {
    if (!o.replace) return writeFileSync(path, text, { mode, flag: 'wx' });
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    writeFileSync(tmp, text, { mode, flag: 'wx' });
    pending.push([tmp, path]);
  };
  let caKey = o.ca?.key;
  let caCert = o.ca?.cert;
  if (!caKey || !caCert) {
    const ca = rsaKeyPair();
    caKey = ca.privateKey;
    caCert = certificate({
      subject: [
        { name: 'commonName', value: `Portcullis local CA (${hostname()})` },
        { name: 'organizationName', value: 'Portcullis' },
      ],
      publicKey: ca.publicKey,
      signer: ca.privateKey,
      issuer: undefined,
      now,
      days: 3650,
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
        { name: 'subjectKeyIdentifier' },
      ],
    });
    // The CA signs one server certificate and, unless asked to keep it, its key is then
    // forgotten: clients that trust ca.crt cannot be fooled by anyone who later reads
    // this directory.
    if (o.keepCaKey) put(files.caKey, forge.pki.privateKeyToPem(caKey), 0o600);
    put(files.caCert, forge.pki.certificateToPem(caCert), 0o644);
  }
  const server = rsaKeyPair();
  const serverCert = certificate({
    subject: [{ name: 'commonName', value: hosts[0] as string }],
    publicKey: server.publicKey,
    signer: caKey,
    issuer: caCert,
    now,
    days: 825,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })) },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ],
  });
  put(files.serverKey, forge.pki.privateKeyToPem(server.privateKey), 0o600);
  put(files.serverCert, forge.pki.certificateToPem(serverCert) + forge.pki.certificateToPem(caCert), 0o644);
  for (const [tmp, path] of pending) renameSync(tmp, path);
}

/** RSA keys come from node's native generator (node-forge's would take seconds). */
function rsaKeyPair(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = forge.pki.privateKeyFromPem(
    privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
  ) as forge.pki.rsa.PrivateKey;
  return { privateKey: key, publicKey: forge.pki.setRsaPublicKey(key.n, key.e) };
}

function certificate(o: {
  subject: forge.pki.CertificateField[];
  publicKey: forge.pki.rsa.PublicKey;
  signer: forge.pki.rsa.PrivateKey;
  issuer: forge.pki.Certificate | undefined;
  now: Date;
  days: number;
  extensions: object[];
}): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = o.publicKey;
  // A positive 128-bit serial (the top bit cleared so DER does not read it as negative).
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(o.now.getTime() - DAY);
  cert.validity.notAfter = new Date(o.now.getTime() + o.days * DAY);
  cert.setSubject(o.subject);
  cert.setIssuer(o.issuer ? o.issuer.subject.attributes : o.subject);
  cert.setExtensions(o.extensions);
  cert.sign(o.signer, forge.md.sha256.create());
  return cert;
}

const STARTER_CONFIG = `# Portcullis gateway configuration (see README.md, "Configuration").
listen: 127.0.0.1:5000
dataDir: data
policy: policy.yaml
logLevel: info
attestation:
  key: keys/gateway.key        # clients pin keys/gateway.pub (also served at /v2/_portcullis/gateway.pub)
tls:
  cert: tls/server.crt         # signed by tls/ca.crt: make clients trust that CA
  key: tls/server.key
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    dockerHubMirror: true
    authRealms: [https://auth.docker.io]
  - name: ghcr.io
    url: https://ghcr.io
`;

const STARTER_POLICY = `# Portcullis policy (see README.md, "Policy"). Nothing is admitted until a rule says so.
version: 1
default: reject
rules:
  # - scope: ghcr.io/your-org
  #   require:
  #     - cosign: { keys: [keys/your-org.pub] }
  - scope: docker.io/library
    reject: "official images need a signer: add a rule with the keys you trust"
`;
