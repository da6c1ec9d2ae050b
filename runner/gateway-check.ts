import type { Digest } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import { parseRemoteError } from '../oci/registry-client/remote-error.js';
import { MAX_ENVELOPE_BYTES } from '../policies/attestation.js';
import { RunnerError } from './errors.js';
import type { Trust } from './settings.js';

/**
 * The question a cached run asks the gateway: its current attestation of one digest
 * (`GET /v2/<repository>/_portcullis/attestation/<digest>?ns=<registry>`). It runs on
 * every cached launch, so it is one request on Node's own http client (the registry
 * client and its HTTP stack cost a launch about 100 ms to load), bounded in time
 * and size, with no redirects and no retries.
 *
 * The answer: the envelope (200); a refusal in the gateway's words (403:
 * IMAGE_DENIED with its reason; another 4xx: IMAGE_UNAVAILABLE); or the gateway
 * counted as unreachable (no connection, too slow, 5xx, 429, anything else).
 */
export type GatewayAnswer =
  { readonly envelope: Buffer } | { readonly refused: RunnerError } | { readonly unreachable: RunnerError };

const MAX_ERROR_BYTES = 64 * 1024;

export async function askGatewayAbout(
  trust: Pick<Trust, 'gateway' | 'caPem'>,
  ref: { readonly host: string; readonly repository: string },
  digest: Digest,
  timeoutMs: number,
): Promise<GatewayAnswer> {
  const url = new URL(`/v2/${ref.repository}/_portcullis/attestation/${digest.text}`, trust.gateway);
  url.searchParams.set('ns', ref.host);
  const what = `the attestation of ${ref.repository}@${digest.text}`;
  const offline = (why: string, cause?: unknown) => ({
    unreachable: new RunnerError('GATEWAY_UNREACHABLE', `the gateway at ${url.origin} ${why} for ${what}`, { cause }),
  });
  let res: { status: number; body: Buffer };
  try {
    res = await get(url, trust, timeoutMs);
  } catch (err) {
    const code = (err as { code?: string }).code;
    return offline(
      code === 'ETIMEDOUT'
        ? `did not answer within ${timeoutMs} ms`
        : `could not be reached (${code ?? (err as Error).message})`,
      err,
    );
  }
  if (res.status === 200) return { envelope: res.body };
  if (res.status >= 500 || res.status === 429 || res.status < 400) return offline(`answered ${res.status}`);
  const remote = parseRemoteError(res.body);
  const said = remote?.message || remote?.code || `status ${res.status}`;
  const reason = typeof remote?.detail?.reason === 'string' ? remote.detail.reason : undefined;
  return res.status === 403
    ? { refused: new RunnerError('IMAGE_DENIED', `the gateway denied ${what}: ${said}`, { reason }) }
    : {
        refused: new RunnerError(
          'IMAGE_UNAVAILABLE',
          `the gateway does not attest ${ref.repository}@${digest.text} now: ${said}`,
          { reason },
        ),
      };
}

async function get(
  url: URL,
  trust: Pick<Trust, 'caPem'>,
  timeoutMs: number,
): Promise<{ status: number; body: Buffer }> {
  const https = url.protocol === 'https:';
  // Module names are fixed strings; TLS trust is the same as every other gateway request's.
  const client = https ? await import('node:https') : await import('node:http');
  const ca = https ? (await import('./gateway-tls.js')).gatewayCa(trust) : undefined;
  return new Promise((resolve, reject) => {
    const req = client.request(
      url,
      {
        method: 'GET',
        headers: { accept: MediaType.dsseEnvelope, 'user-agent': 'secure-run' },
        agent: false,
        ...(ca ? { ca } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const max = status === 200 ? MAX_ENVELOPE_BYTES : MAX_ERROR_BYTES;
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > max) {
          req.destroy();
          return resolve({ status: status === 200 ? 502 : status, body: Buffer.alloc(0) });
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > max) {
            req.destroy();
            resolve({ status: status === 200 ? 502 : status, body: Buffer.alloc(0) });
          } else chunks.push(c);
        });
        res.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end();
  });
}
