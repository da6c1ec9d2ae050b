import assert from 'node:assert/strict';
import { test } from 'node:test';
import ipaddr from 'ipaddr.js';
import { checkRealm, checkRedirect, isInternalHost } from '../../../oci/registry-client/realm.js';

/**
 * Every entry of IANA's IPv4 and IPv6 Special-Purpose Address Registries
 * (iana.org/assignments/iana-ipv4-special-registry, iana-ipv6-special-registry, as
 * published in 2025), plus the multicast blocks and the deprecated site-local and
 * IPv4-compatible ranges: none of them is a place a registry, token realm or blob
 * redirect may send the gateway. The first, the last and a middle address of each
 * range are checked, as literals and in the bracketed form URLs use.
 */
const IPV4_SPECIAL = [
  '0.0.0.0/8', // "This network" (RFC 791)
  '0.0.0.0/32', // "This host on this network"
  '10.0.0.0/8', // Private-Use (RFC 1918)
  '100.64.0.0/10', // Shared Address Space (RFC 6598)
  '127.0.0.0/8', // Loopback
  '169.254.0.0/16', // Link Local
  '172.16.0.0/12', // Private-Use
  '192.0.0.0/24', // IETF Protocol Assignments
  '192.0.0.0/29', // IPv4 Service Continuity Prefix
  '192.0.0.8/32', // IPv4 dummy address
  '192.0.0.9/32', // Port Control Protocol Anycast
  '192.0.0.10/32', // Traversal Using Relays around NAT Anycast
  '192.0.0.170/32', // NAT64/DNS64 Discovery
  '192.0.0.171/32', // NAT64/DNS64 Discovery
  '192.0.2.0/24', // Documentation (TEST-NET-1)
  '192.31.196.0/24', // AS112-v4
  '192.52.193.0/24', // AMT
  '192.88.99.0/24', // Deprecated (6to4 Relay Anycast)
  '192.168.0.0/16', // Private-Use
  '192.175.48.0/24', // Direct Delegation AS112 Service
  '198.18.0.0/15', // Benchmarking
  '198.51.100.0/24', // Documentation (TEST-NET-2)
  '203.0.113.0/24', // Documentation (TEST-NET-3)
  '240.0.0.0/4', // Reserved
  '255.255.255.255/32', // Limited Broadcast
  '224.0.0.0/4', // Multicast (IPv4 Multicast Address Space Registry)
];

const IPV6_SPECIAL = [
  '::1/128', // Loopback Address
  '::/128', // Unspecified Address
  '::ffff:0:0/96', // IPv4-mapped Address
  '64:ff9b::/96', // IPv4-IPv6 Translat. (NAT64)
  '64:ff9b:1::/48', // IPv4-IPv6 Translat. (local use)
  '100::/64', // Discard-Only Address Block
  '100:0:0:1::/64', // Dummy IPv6 Prefix
  '2001::/23', // IETF Protocol Assignments
  '2001::/32', // TEREDO
  '2001:1::1/128', // Port Control Protocol Anycast
  '2001:1::2/128', // Traversal Using Relays around NAT Anycast
  '2001:1::3/128', // DNS-SD Service Registration Protocol Anycast
  '2001:2::/48', // Benchmarking
  '2001:3::/32', // AMT
  '2001:4:112::/48', // AS112-v6
  '2001:10::/28', // Deprecated (previously ORCHID)
  '2001:20::/28', // ORCHIDv2
  '2001:30::/28', // Drone Remote ID Protocol Entity Tags (DETs) Prefix
  '2001:db8::/32', // Documentation
  '2002::/16', // 6to4
  '2620:4f:8000::/48', // Direct Delegation AS112 Service
  '3fff::/20', // Documentation
  '5f00::/16', // Segment Routing (SRv6) SIDs
  'fc00::/7', // Unique-Local
  'fe80::/10', // Link-Local Unicast
  'fec0::/10', // Site-local (deprecated, RFC 3879)
  '::/96', // IPv4-compatible (deprecated, RFC 4291)
  'ff00::/8', // Multicast
];

function samples(cidr: string): string[] {
  const [addr, bits] = ipaddr.parseCIDR(cidr);
  if (addr.kind() === 'ipv4') {
    const first = ipaddr.IPv4.networkAddressFromCIDR(cidr);
    const last = ipaddr.IPv4.broadcastAddressFromCIDR(cidr);
    const mid = first.toByteArray();
    if (bits < 32) mid[3] = (mid[3] as number) | 1;
    return [first.toString(), last.toString(), ipaddr.fromByteArray(mid).toString()];
  }
  const first = ipaddr.IPv6.networkAddressFromCIDR(cidr);
  const last = ipaddr.IPv6.broadcastAddressFromCIDR(cidr);
  const mid = first.toByteArray();
  if (bits < 120) mid[15] = 0x2a;
  return [first.toString(), last.toString(), ipaddr.fromByteArray(mid).toString()];
}

for (const cidr of [...IPV4_SPECIAL, ...IPV6_SPECIAL]) {
  test(`special-purpose ${cidr} is internal`, () => {
    for (const a of samples(cidr)) {
      assert.equal(isInternalHost(a), true, a);
      if (a.includes(':')) assert.equal(isInternalHost(`[${a}]`), true, `[${a}]`);
    }
  });
}

test('IPv6 forms that embed an IPv4 address are internal whatever the IPv4 part', () => {
  for (const a of [
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
    '::8.8.8.8',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
  ]) {
    assert.equal(isInternalHost(a), true, a);
  }
});

test('public unicast addresses and names are not internal', () => {
  for (const a of [
    '8.8.8.8',
    '1.1.1.1',
    '151.101.1.69',
    '2606:4700:4700::1111',
    '2a00:1450:4001:82b::200e',
    'registry-1.docker.io',
  ]) {
    assert.equal(isInternalHost(a), false, a);
  }
});

test('realms and redirects to the ranges the old hand list missed are refused', () => {
  const upstream = new URL('https://registry.example.com');
  for (const host of [
    '[64:ff9b::7f00:1]',
    '[2002:7f00:1::1]',
    '[fec0::1]',
    '[::127.0.0.1]',
    '198.18.0.1',
    '192.0.2.1',
  ]) {
    assert.throws(() => checkRealm(`https://${host}/token`, upstream, undefined), {
      code: 'UPSTREAM_AUTH_REALM_REJECTED',
    });
    assert.throws(() => checkRedirect(`https://${host}/blob`, upstream, upstream, undefined), {
      code: 'UPSTREAM_REDIRECT_REJECTED',
    });
  }
});
