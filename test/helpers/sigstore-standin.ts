import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sigstoreMock from '@sigstore/mock';

/**
 * A private Sigstore of the test's own on 127.0.0.1: Fulcio (its v1 `signingCert` API,
 * which cosign 2.5 calls), a CT log and Rekor (v1 `log/entries`), built from
 * @sigstore/mock's CA, CT log and transparency log behind a small HTTP server. (Its TSA
 * is in the trusted root but not served: the mock encodes only nonces below 2^53, and
 * cosign's are larger.) The real cosign signs keylessly against it with an identity token the test
 * mints (`identityToken`), and trusts it through the files `env` names; the gateway
 * trusts it through `trustedRootFile`.
 *
 * Faults a real Fulcio cannot be asked for are other CAs (`signArgs(ca)`): one whose clock is behind
 * (its certificates have expired by the time Rekor logs the signature), a CA that embeds
 * no SCT, and one whose SCTs come from a CT log the trusted root does not know.
 */
export interface SigstoreStandin {
  readonly url: string;
  /** The trusted_root.json the gateway and cosign verify against. */
  readonly trustedRootFile: string;
  /** Environment for cosign: its Fulcio root, CT log key and Rekor key, and a throwaway TUF cache. */
  readonly env: NodeJS.ProcessEnv;
  /** What cosign is told: `--fulcio-url` (of the CA that is to answer) and `--rekor-url`. */
  signArgs(ca?: StandinCA): string[];
  /** An OIDC identity token (ES256, unverified by this Fulcio, as a test stand-in) for these claims. */
  identityToken(claims: { iss: string; sub: string } & Record<string, string>): string;
  close(): Promise<void>;
}

export type StandinCA = 'good' | 'clock-behind' | 'no-sct' | 'foreign-sct';

interface HandlerResult {
  readonly statusCode: number;
  readonly response: string | Uint8Array;
  readonly contentType?: string;
}
type Handler = (body: string) => Promise<HandlerResult>;

const MAX_BODY = 1 << 20;

const pem = (label: string, der: Uint8Array) =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END ${label}-----\n`;

const ecKeys = (): { publicKey: KeyObject; privateKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' });

const spki = (k: KeyObject): Buffer => k.export({ format: 'der', type: 'spki' });

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

function readBody(req: import('node:http').IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Fulcio's v1 request (what cosign 2.5 sends) as the mock's v2 handler reads it. */
function v1ToV2(body: string, token: string): string {
  const req = JSON.parse(body) as { publicKey?: { content?: string }; certificateSigningRequest?: string };
  if (req.certificateSigningRequest)
    return JSON.stringify({
      credentials: { oidcIdentityToken: token },
      certificateSigningRequest: Buffer.from(req.certificateSigningRequest, 'base64').toString('utf8'),
    });
  const key = Buffer.from(req.publicKey?.content ?? '', 'base64').toString('utf8');
  return JSON.stringify({
    credentials: { oidcIdentityToken: token },
    publicKeyRequest: { publicKey: { content: key } },
  });
}

/**
 * What Rekor logs for a proposed entry: a hashedrekord as proposed, a DSSE (v0.0.1)
 * as the hashes of its envelope and payload and its signatures with their verifiers
 * (the envelope itself is not kept), as cosign `attest` and verifiers expect.
 */
function canonicalEntry(body: string): string {
  const entry = JSON.parse(body) as {
    kind?: string;
    apiVersion?: string;
    spec?: { proposedContent?: { envelope: string; verifiers: string[] } };
  };
  const proposed = entry.spec?.proposedContent;
  if (entry.kind !== 'dsse' || entry.apiVersion !== '0.0.1' || proposed === undefined) return body;
  const envelope = JSON.parse(proposed.envelope) as { payload: string; signatures: { sig: string }[] };
  const sha256 = (b: Buffer | string) => ({ algorithm: 'sha256', value: createHash('sha256').update(b).digest('hex') });
  return JSON.stringify({
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: sha256(proposed.envelope),
      payloadHash: sha256(Buffer.from(envelope.payload, 'base64')),
      signatures: envelope.signatures.map((sig, i) => ({
        signature: sig.sig,
        verifier: proposed.verifiers[i] ?? proposed.verifiers[0],
      })),
    },
  });
}

export async function startSigstoreStandin(dir: string): Promise<SigstoreStandin> {
  const { initializeCA, initializeCTLog, initializeTLog, initializeTSA, fulcioHandler, rekorHandler } = sigstoreMock;
  const hourAgo = new Date(Date.now() - 3_600_000);
  const ctKeys = ecKeys();
  const ctLog = await initializeCTLog(ctKeys);
  const foreignCtLog = await initializeCTLog(ecKeys());
  const caKeys = ecKeys();
  const cas: Record<StandinCA, Awaited<ReturnType<typeof initializeCA>>> = {
    good: await initializeCA(caKeys, ctLog),
    'clock-behind': await initializeCA(caKeys, ctLog, hourAgo),
    'no-sct': await initializeCA(caKeys),
    'foreign-sct': await initializeCA(caKeys, foreignCtLog),
  };
  // Every CA above signs with the same key and name, so one root certificate serves all.
  const root = Buffer.from(cas.good.rootCertificate.buffer);
  const rekorKeys = ecKeys();
  const tsa = await initializeTSA(ecKeys());

  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const tlog = await initializeTLog(url, rekorKeys);
  const handlers = new Map<string, (body: Buffer) => Promise<HandlerResult>>([
    ['/api/v1/log/entries', (body) => (rekorHandler(tlog).fn as Handler)(canonicalEntry(body.toString('utf8')))],
  ]);

  server.on('request', (req, res) => {
    void (async () => {
      try {
        const body = await readBody(req);
        const path = new URL(req.url ?? '/', url).pathname;
        const ca = /^\/ca\/([a-z-]+)\/api\/v1\/signingCert$/.exec(path)?.[1] as StandinCA | undefined;
        if (req.method === 'POST' && ca !== undefined && Object.hasOwn(cas, ca)) {
          const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
          const out = await fulcioHandler(cas[ca]).fn(v1ToV2(body.toString('utf8'), token));
          if (out.statusCode !== 201) {
            res.writeHead(out.statusCode, { 'content-type': 'text/plain' }).end(String(out.response));
            return;
          }
          const chain = (
            JSON.parse(String(out.response)) as {
              signedCertificateEmbeddedSct: { chain: { certificates: string[] } };
            }
          ).signedCertificateEmbeddedSct.chain.certificates;
          res.writeHead(201, { 'content-type': 'application/pem-certificate-chain' }).end(chain.join(''));
          return;
        }
        const handler = req.method === 'POST' ? handlers.get(path) : undefined;
        if (!handler) {
          res.writeHead(404).end();
          return;
        }
        const out = await handler(body);
        const headers: Record<string, string> = { 'content-type': out.contentType ?? 'text/plain' };
        if (path === '/api/v1/log/entries' && out.statusCode === 201) {
          const uuid = Object.keys(JSON.parse(String(out.response)) as object)[0] ?? '';
          headers.location = `/api/v1/log/entries/${uuid}`;
          headers.etag = uuid;
        }
        res.writeHead(out.statusCode, headers).end(out.response);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
      }
    })();
  });

  const start = new Date(Date.now() - 2 * 3_600_000).toISOString();
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: url,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: spki(rekorKeys.publicKey).toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start },
        },
        logId: { keyId: createHash('sha256').update(spki(rekorKeys.publicKey)).digest('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: url,
        certChain: { certificates: [{ rawBytes: root.toString('base64') }] },
        validFor: { start },
      },
    ],
    ctlogs: [
      {
        baseUrl: url,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: spki(ctKeys.publicKey).toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start },
        },
        logId: { keyId: Buffer.from(ctLog.logID.buffer).toString('base64') },
      },
    ],
    timestampAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'tsa' },
        uri: url,
        certChain: {
          certificates: [
            { rawBytes: Buffer.from(tsa.intCertificate.buffer).toString('base64') },
            { rawBytes: Buffer.from(tsa.rootCertificate.buffer).toString('base64') },
          ],
        },
        validFor: { start },
      },
    ],
  };
  const trustedRootFile = join(dir, 'standin-trusted-root.json');
  writeFileSync(trustedRootFile, JSON.stringify(trustedRoot, null, 2));
  const files = {
    SIGSTORE_ROOT_FILE: join(dir, 'standin-fulcio-root.pem'),
    SIGSTORE_CT_LOG_PUBLIC_KEY_FILE: join(dir, 'standin-ctlog.pub'),
    SIGSTORE_REKOR_PUBLIC_KEY: join(dir, 'standin-rekor.pub'),
    SIGSTORE_TSA_CERTIFICATE_FILE: join(dir, 'standin-tsa-chain.pem'),
  };
  writeFileSync(files.SIGSTORE_ROOT_FILE, pem('CERTIFICATE', root));
  writeFileSync(files.SIGSTORE_CT_LOG_PUBLIC_KEY_FILE, pem('PUBLIC KEY', spki(ctKeys.publicKey)));
  writeFileSync(files.SIGSTORE_REKOR_PUBLIC_KEY, pem('PUBLIC KEY', spki(rekorKeys.publicKey)));
  writeFileSync(
    files.SIGSTORE_TSA_CERTIFICATE_FILE,
    pem('CERTIFICATE', Buffer.from(tsa.intCertificate.buffer)) +
      pem('CERTIFICATE', Buffer.from(tsa.rootCertificate.buffer)),
  );

  const tokenKeys = ecKeys();
  return {
    url,
    trustedRootFile,
    env: { ...files },
    signArgs: (ca = 'good') => ['--fulcio-url', `${url}/ca/${ca}`, '--rekor-url', url],
    identityToken(claims) {
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'standin' }));
      const payload = b64url(JSON.stringify({ aud: 'sigstore', iat: now, nbf: now, exp: now + 600, ...claims }));
      const signature = sign('sha256', Buffer.from(`${header}.${payload}`), {
        key: tokenKeys.privateKey,
        dsaEncoding: 'ieee-p1363',
      });
      return `${header}.${payload}.${b64url(signature)}`;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
