import { parseImageReference } from '../oci/reference.js';
import type { VerifiedSummary } from '../policies/attestation.js';
import { checkAttestation } from './attestation-check.js';
import { fetchAttestationEnvelopes, gatewayClient, resolveImage, type ResolvedImage } from './gateway-client.js';
import type { Platform } from './platform.js';
import { pinnedKey, type Trust } from './settings.js';

/**
 * Resolves IMAGE through the trusted gateway and checks the gateway's attestation
 * for the exact manifest digest. The first half of every `secure-run` launch; on its
 * own, `secure-run verify`.
 */
export interface VerifiedImage {
  readonly image: ResolvedImage;
  readonly summary: VerifiedSummary;
  readonly envelope: Buffer;
}

export async function verifyImage(
  trust: Trust,
  imageText: string,
  opts: { platform: Platform; maxAgeMs: number; now?: Date },
): Promise<VerifiedImage> {
  const ref = parseImageReference(imageText);
  const client = gatewayClient(trust, ref);
  try {
    const image = await resolveImage(client, ref, opts.platform);
    const envelopes = await fetchAttestationEnvelopes(client, ref.repository, image.manifestDigest);
    const { summary, index } = checkAttestation({
      envelopes,
      pinnedKey: pinnedKey(trust),
      manifestDigest: image.manifestDigest.text,
      now: opts.now ?? new Date(),
      maxAgeMs: opts.maxAgeMs,
      subjectName: `${ref.host}/${ref.repository}`,
    });
    return { image, summary, envelope: envelopes[index] as Buffer };
  } finally {
    await client.close();
  }
}
