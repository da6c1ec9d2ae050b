import { trustedCertificates } from '../oci/registry-client/ca.js';
import type { Trust } from './settings.js';

/**
 * The CA certificates secure-run trusts for the gateway's https: Node's, the system
 * store's (where the README says to install the gateway's local CA) and the one
 * pinned with `secure-run trust --ca`. Loaded only when the network is used.
 */
export function gatewayCa(trust: Pick<Trust, 'caPem'>): string[] {
  return trustedCertificates({ extra: trust.caPem ? [trust.caPem] : [] });
}
