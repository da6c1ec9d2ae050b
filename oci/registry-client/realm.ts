import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
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

/** Special-purpose IPv6 ranges ipaddr.js does not name (IANA IPv6 Special-Purpose Address Registry). */
const EXTRA_V6: readonly [ipaddr.IPv6, number][] = [
  // IPv4-compatible addresses (RFC 4291, deprecated): ::a.b.c.d reaches a.b.c.d on some stacks.
  ipaddr.IPv6.parseCIDR('::/96'),
  // Dummy IPv6 prefix (RFC 9780).
  ipaddr.IPv6.parseCIDR('100:0:0:1::/64'),
];

/**
 * True for names and IP literals that are not a public unicast address: this machine,
 * private and shared networks, link-local, multicast, documentation, benchmarking and
 * every other special-purpose range, and IPv6 forms that embed an IPv4 address
 * (IPv4-mapped and -compatible, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo), whose
 * IPv4 part could be anything. Classified with ipaddr.js (its `unicast` range is the
 * only one allowed), plus the few registry entries it does not name.
 */
export function isInternalHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || host === '') return true;
  if (isIP(host.split('%')[0] ?? '') === 0) {
    // Not an IP literal: a name (checked again after DNS for untrusted targets). Non-canonical
    // numeric forms (0x7f.1, 2130706433) never reach here: WHATWG URL parsing makes them dotted quads.
    return false;
  }
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(host);
  } catch {
    return true;
  }
  if (addr.kind() === 'ipv6' && EXTRA_V6.some((range) => (addr as ipaddr.IPv6).match(range))) return true;
  return addr.range() !== 'unicast';
}
