import { bundleFromJSON } from '@sigstore/bundle';
import type { ASN1Obj } from '@sigstore/core';
import { toSignedEntity, type SignedEntity, type TrustMaterial } from '@sigstore/verify';

/**
 * @sigstore/core encodes a certificate's DER again from its parsed tree each time it is
 * compared or its signature checked, and @sigstore/verify does both for every pair of
 * certificates while it builds a path: most of a keyless verification's time. The
 * trees are never changed after parsing (the SCT check alters a re-parsed clone), so
 * the encodings compared and verified — the certificate's, and those of its parts
 * (TBS, key, signature) and of theirs (names, validity, extensions) — are kept once
 * made: compact copies, no more of them than those two levels hold, however the
 * certificate nests; a copy is handed out, so no caller can alter the kept bytes.
 */
function keepEncodings(root: ASN1Obj): void {
  const nodes = [root, ...root.subs, ...(root.subs[0]?.subs ?? [])];
  for (const node of nodes) {
    const encode = node.toDER.bind(node);
    let der: Buffer | undefined;
    Object.defineProperty(node, 'toDER', { value: () => Buffer.from((der ??= Buffer.from(encode()))) });
  }
}

/** A bundle (JSON) as @sigstore/verify's signed entity, its certificate's encodings kept. */
export function signedEntity(bundle: unknown, artifact: Uint8Array | undefined): SignedEntity {
  const entity = toSignedEntity(bundleFromJSON(bundle), artifact === undefined ? undefined : Buffer.from(artifact));
  if (entity.key.$case === 'certificate') keepEncodings(entity.key.certificate.root);
  return entity;
}

/** Trust material whose authorities' certificates keep their encodings. */
export function withKeptEncodings(material: TrustMaterial): TrustMaterial {
  for (const ca of [...material.certificateAuthorities, ...material.timestampAuthorities])
    for (const cert of ca.certChain) keepEncodings(cert.root);
  return material;
}
