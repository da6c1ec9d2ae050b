import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { UpstreamError } from '../errors.js';

/**
 * Which token realms a registry may send us to (THREATS REG-15). A hostile registry
 * must not turn the gateway into a client of an internal address, nor collect the
 * upstream's credentials on another host.
 *
 * Allowed: the upstream's own origin; origins listed in the upstream's configuration;
 * and, only when no list is configured, https origins whose host is not an internal
 * IP literal or `localhost`. Userinfo in the realm is always refused; redirects from
 * the token endpoint are never followed.
 */
export interface AllowedTarget {
  readonly url: URL;
  /** True for the upstream's own origin or a configured one: credentials may go there. */
  readonly trusted: boolean;
}

export function checkRealm(realm: string, upstream: URL, allowedOrigins: readonly string[] | undefined): AllowedTarget {
  let url: URL;
  try {
    url = new URL(realm);
  } catch (cause) {
    throw new UpstreamError('UPSTREAM_AUTH_REALM_REJECTED', 'token realm is not an absolute URL', { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UpstreamError('UPSTREAM_AUTH_REALM_REJECTED', `token realm scheme ${url.protocol} is not allowed`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new UpstreamError('UPSTREAM_AUTH_REALM_REJECTED', 'token realm must not carry credentials');
  }
  if (url.origin === upstream.origin) return { url, trusted: true };
  if (allowedOrigins !== undefined) {
    if (allowedOrigins.includes(url.origin)) return { url, trusted: true };
    throw new UpstreamError(
      'UPSTREAM_AUTH_REALM_REJECTED',
      `token realm origin ${url.origin} is not in the upstream's allowed list`,
    );
  }
  if (url.protocol === 'https:' && !isInternalHost(url.hostname)) return { url, trusted: false };
  throw new UpstreamError(
    'UPSTREAM_AUTH_REALM_REJECTED',
    `token realm origin ${url.origin} is not allowed for ${upstream.origin}`,
  );
}

/**
 * Where a registry may redirect us (blob storage): its own origin, a configured
 * origin, or an https origin that is not an internal address. Credentials are never
 * sent off the registry's origin; untrusted targets are also checked after DNS.
 */
export function checkRedirect(
  location: string,
  from: URL,
  upstream: URL,
  allowedOrigins: readonly string[] | undefined,
): AllowedTarget {
  let url: URL;
  try {
    url = new URL(location, from);
  } catch (cause) {
    throw new UpstreamError('UPSTREAM_REDIRECT_REJECTED', 'redirect to an invalid URL', { cause });
  }
  if (url.username !== '' || url.password !== '')
    throw new UpstreamError('UPSTREAM_REDIRECT_REJECTED', 'redirect URL carries credentials');
  if (url.origin === upstream.origin) return { url, trusted: true };
  if (allowedOrigins?.includes(url.origin)) return { url, trusted: true };
  if (url.protocol === 'https:' && !isInternalHost(url.hostname)) return { url, trusted: false };
  throw new UpstreamError(
    'UPSTREAM_REDIRECT_REJECTED',
    `redirect to ${url.origin} is not allowed (the registry's origin, a configured origin, or public https)`,
  );
}

/** A DNS lookup for untrusted targets that refuses names resolving to internal addresses. */
export function publicOnlyLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '');
    const bad = addresses.find((a) => isInternalHost(a.address));
    if (bad || addresses.length === 0) {
      return callback(
        Object.assign(new Error(`${hostname} resolves to an internal address`), { code: 'EPORTCULLIS_INTERNAL' }),
        '',
      );
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0] as LookupAddress;
    return callback(null, first.address, first.family);
  });
}

/** True for names and IP literals that point into this machine or a private network. */
export function isInternalHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || host === '') return true;
  const kind = isIP(host);
  if (kind === 4) return isInternalV4(host);
  if (kind === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
    if (mapped?.[1]) return isInternalV4(mapped[1]);
    if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(host)) return true;
    return host === '::' || host === '::1' || /^f[cd]/.test(host) || /^fe[89ab]/.test(host);
  }
  // Non-canonical numeric forms (0x7f.1, 2130706433) never reach here as WHATWG URL
  // parsing canonicalises them to dotted quads.
  return false;
}

function isInternalV4(ip: string): boolean {
  const [a = 0, b = 0] = ip.split('.').map(Number);
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 100 && b >= 64 && b <= 127) ||
    a >= 224
  );
}
