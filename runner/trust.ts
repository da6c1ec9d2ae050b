import { createHash, createPublicKey } from 'node:crypto';
import { Agent, request, type Dispatcher } from 'undici';
import { readBounded } from '../oci/registry-client/body.js';
import { splitPem } from '../oci/registry-client/ca.js';
import { causeText } from '../oci/registry-client/client.js';
import { isObject, parseStrictJson } from '../oci/strict-json.js';
import { RunnerError } from './errors.js';
import { gatewayCa } from './gateway-tls.js';
import { writeTrust, type RunnerPaths, type Trust } from './settings.js';

/**
 * `secure-run trust GATEWAY_URL`: fetch the gateway's public key, show its
 * fingerprint, and pin it once the user confirms it (or it equals `--fingerprint`).
 * The fingerprint is sha256 over the key's SubjectPublicKeyInfo DER, the same value
 * the gateway logs at start-up.
 */
export interface OfferedKey {
  readonly gateway: string;
  readonly publicKeyPem: string;
  readonly fingerprint: string;
  /** The CA given with --ca, kept with the pin. */
  readonly caPem?: string | undefined;
  /** Keys the gateway says it still signs with during a rotation (its word only: informative). */
  readonly previousFingerprints?: readonly string[] | undefined;
}

export async function fetchGatewayKey(
  gatewayUrl: string,
  warn: (line: string) => void = () => undefined,
  caPem?: string,
): Promise<OfferedKey> {
  const base = new URL(gatewayUrl);
  if (base.protocol !== 'https:' && base.protocol !== 'http:')
    throw new RunnerError('NOT_TRUSTED', 'the gateway URL must be http(s)');
  if (base.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname)) {
    warn(
      `secure-run: warning: ${base.origin} is plain HTTP: anyone on the path can swap the key now and the images later; compare the fingerprint out of band, and prefer https (portcullis init makes a TLS certificate)`,
    );
  }
  if (caPem !== undefined && splitPem(caPem).length === 0) {
    throw new RunnerError('OPTION_INVALID', '--ca: the file holds no PEM certificate');
  }
  // https is checked against the system store (where a local CA is installed) and --ca.
  const dispatcher = base.protocol === 'https:' ? new Agent({ connect: { ca: gatewayCa({ caPem }) } }) : undefined;
  const res = await request(new URL('/v2/_portcullis/gateway.pub', base), {
    method: 'GET',
    headersTimeout: 15_000,
    bodyTimeout: 15_000,
    ...(dispatcher ? { dispatcher } : {}),
  }).catch((err: unknown) => {
    const code = (err as { code?: string }).code ?? '';
    if (/CERT|SELF_SIGNED|VERIFY|ISSUER/.test(code)) {
      throw new RunnerError(
        'NOT_TRUSTED',
        `${base.origin}: its TLS certificate is not trusted (${code}); install its CA in the system store (update-ca-certificates) or pass --ca FILE`,
        { cause: err },
      );
    }
    throw new RunnerError(
      'GATEWAY_UNREACHABLE',
      `the gateway at ${base.origin} could not be reached (${causeText(err)})`,
      {
        cause: err,
      },
    );
  });
  try {
    const offered = await readKey(res, base, caPem);
    const previousFingerprints = await previousKeysOf(base, dispatcher);
    return previousFingerprints.length ? { ...offered, previousFingerprints } : offered;
  } finally {
    await dispatcher?.close();
  }
}

/** The fingerprints gateway.json lists as previous keys; none when it cannot be read. */
async function previousKeysOf(base: URL, dispatcher: Dispatcher | undefined): Promise<string[]> {
  try {
    const res = await request(new URL('/v2/_portcullis/gateway.json', base), {
      method: 'GET',
      headersTimeout: 5000,
      bodyTimeout: 5000,
      ...(dispatcher ? { dispatcher } : {}),
    });
    const bytes = await readBounded(res.body, 64 * 1024, 'gateway.json');
    if (res.statusCode !== 200) return [];
    const doc = parseStrictJson(bytes, { maxDepth: 4 });
    if (!isObject(doc) || !Array.isArray(doc.previousKeys)) return [];
    return doc.previousKeys
      .slice(0, 8)
      .map((k) => (isObject(k) && typeof k.fingerprint === 'string' ? k.fingerprint : ''))
      .filter((f) => /^sha256:[0-9a-f]{64}$/.test(f));
  } catch {
    return [];
  }
}

async function readKey(res: Dispatcher.ResponseData, base: URL, caPem: string | undefined): Promise<OfferedKey> {
  if (res.statusCode !== 200) {
    await readBounded(res.body, 64 * 1024, 'response').catch(() => undefined);
    throw new RunnerError('NOT_TRUSTED', `${base.origin} did not serve a gateway key (HTTP ${res.statusCode})`);
  }
  const pem = (await readBounded(res.body, 16 * 1024, 'gateway key')).toString('utf8');
  let key;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new RunnerError('NOT_TRUSTED', `the gateway's key cannot be parsed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new RunnerError('NOT_TRUSTED', 'the gateway key is not ECDSA P-256');
  const der = key.export({ type: 'spki', format: 'der' });
  return {
    gateway: base.origin,
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }) as string,
    fingerprint: `sha256:${createHash('sha256').update(der).digest('hex')}`,
    ...(caPem !== undefined ? { caPem } : {}),
  };
}

/** Pins `offered` when `expected` matches its fingerprint (scripts) or `confirmed` says yes (people). */
export function pinKey(
  paths: RunnerPaths,
  offered: OfferedKey,
  decision: { expected?: string | undefined; confirmed?: boolean },
  now = new Date(),
): Trust {
  if (decision.expected !== undefined) {
    const want = decision.expected.startsWith('sha256:')
      ? decision.expected.toLowerCase()
      : `sha256:${decision.expected.toLowerCase()}`;
    if (want !== offered.fingerprint)
      throw new RunnerError(
        'TRUST_MISMATCH',
        `the gateway offers key ${offered.fingerprint}, not ${want}: nothing was pinned`,
      );
  } else if (!decision.confirmed) {
    throw new RunnerError('NOT_TRUSTED', 'the key was not confirmed: nothing was pinned');
  }
  const trust: Trust = {
    gateway: offered.gateway,
    publicKeyPem: offered.publicKeyPem,
    fingerprint: offered.fingerprint,
    pinnedAt: now.toISOString(),
    ...(offered.caPem !== undefined ? { caPem: offered.caPem } : {}),
  };
  writeTrust(paths, trust);
  return trust;
}
