import { bundleFromJSON } from '@sigstore/bundle';
import type { ASN1Obj } from '@sigstore/core';
import { toSignedEntity, type SignedEntity, type TrustMaterial } from '@sigstore/verify';

/**
 * @sigstore/core encodes a certificate's DER again from its parsed tree each time it is
 * compared or its signature checked, and @sigstore/verify does both for every pair of
 * certificates while it builds a path: most of a keyless verification's time. The
 * trees are never changed after parsing, so each node's encoding is kept once it is
 * made (a copy is handed out, so no caller can alter the kept bytes).
 */
function keepEncodings(root: ASN1Obj): void {
  const stack: ASN1Obj[] = [root];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    const encode = node.toDER.bind(node);
    let der: Buffer | undefined;
    Object.defineProperty(node, 'toDER', { value: () => Buffer.from((der ??= encode())) });
    stack.push(...node.subs);
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
