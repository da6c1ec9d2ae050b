import { createHash, type KeyObject } from 'node:crypto';
import { digestOf, parseDigest, type Digest } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import type { ImageManifest } from '../oci/manifest.js';
import { signStatementBy, verificationSummary, VSA_PREDICATE_TYPE, type ResourceRef } from '../policies/attestation.js';
import type { MetadataStore } from './metadata/metadata-store.js';
import type { BlobStore } from './store/blob-store.js';
import type { Address } from './upstreams.js';

/**
 * Signs what the gateway verified. On every admission of an image or index the
 * gateway issues an in-toto Statement with a SLSA verification summary in a DSSE
 * envelope, signed with its own key, and stores it next to the image. It is served
 * where standard tools look: the cosign `sha256-<hex>.att` tag (merged with the
 * publisher's own attestations, never hiding them) and the referrers API.
 *
 * An attestation says: this gateway's policy (digest given) admitted this digest on
 * the strength of these signatures, at this time. It says nothing more.
 */
export interface SigningKey {
  readonly key: KeyObject;
  readonly publicKeyPem: string;
  /** sha256 of the public key's SubjectPublicKeyInfo DER, hex. */
  readonly fingerprint: string;
}

export interface GatewaySigner extends SigningKey {
  /** Keys of a rotation still under way: every attestation is signed with these as well. */
  readonly previous: readonly SigningKey[];
  readonly verifierId: string;
  readonly version: string;
}

/**
 * Names the set of keys an attestation is signed with: attestations are stored per
 * key set, so after a rotation none signed by the old set alone is served again.
 */
export function keySetOf(signer: Pick<GatewaySigner, 'fingerprint' | 'previous'>): string {
  return [signer.fingerprint, ...signer.previous.map((p) => p.fingerprint)].join(',');
}

export interface AttestationDeps {
  readonly store: BlobStore;
  readonly metadata: MetadataStore;
  readonly signer: GatewaySigner;
  readonly now: () => number;
}

export interface StoredEnvelope {
  readonly digest: Digest;
  readonly size: number;
  /** When it was signed (ms since the epoch). */
  readonly createdAt: number;
}

const COSIGN_SIGNATURE = 'dev.cosignproject.cosign/signature';
/** Marks the gateway's own entries; removed from anything that comes from upstream. */
export const GATEWAY_MARK = 'dev.portcullis.attestation';
const GATEWAY_MARK_VALUE = 'verification-summary';

/** Upstream content that claims to be, or could be taken for, the gateway's attestation. */
export function impersonatesGateway(annotations: Readonly<Record<string, string>> | undefined): boolean {
  if (!annotations) return false;
  return (
    GATEWAY_MARK in annotations ||
    annotations.predicateType === VSA_PREDICATE_TYPE ||
    annotations['in-toto.io/predicate-type'] === VSA_PREDICATE_TYPE
  );
}
export const REFERRER_ARTIFACT_TYPE = MediaType.inTotoPayload;

export class AttestationService {
  constructor(private readonly deps: AttestationDeps) {}

  /**
   * Issues and stores the attestation for a subject that `policy` has just admitted.
   * Callers guarantee the admission; this signs what they decided.
   */
  async issue(
    addr: Address,
    subject: Digest,
    inputs: readonly ResourceRef[],
    policy: { source: string; digest: Digest },
  ): Promise<StoredEnvelope> {
    const { signer, store, metadata, now } = this.deps;
    const firstAdmitted = await metadata.firstAdmitted(addr.name, subject.text);
    const statement = verificationSummary({
      subjectName: addr.name,
      subjectDigest: subject.text,
      verifierId: signer.verifierId,
      verifierVersion: signer.version,
      timeVerified: new Date(now()),
      resourceUri: `docker://${addr.name}@${subject.text}`,
      policy: { uri: policy.source, digest: { [policy.digest.algorithm]: policy.digest.hex } },
      inputAttestations: inputs,
      firstAdmitted: new Date(firstAdmitted ?? now()),
    });
    const envelope = signStatementBy(
      statement,
      [signer, ...signer.previous].map((k) => ({ key: k.key, keyid: k.fingerprint.slice(0, 16) })),
    );
    const digest = digestOf(envelope);
    const createdAt = now();
    await store.putBytes(digest, envelope);
    await metadata.recordAttestation(addr.name, {
      subject: subject.text,
      envelope: digest.text,
      size: envelope.length,
      policyDigest: policy.digest.text,
      signingKeys: keySetOf(signer),
      createdAt,
    });
    return { digest, size: envelope.length, createdAt };
  }

  /** The stored attestation of `subject` under `policyDigest`, signed by the current key set, if there is one. */
  async find(addr: Address, subject: Digest, policyDigest: string): Promise<StoredEnvelope | undefined> {
    const record = await this.deps.metadata.attestation(
      addr.name,
      subject.text,
      policyDigest,
      keySetOf(this.deps.signer),
    );
    if (!record || (await this.deps.store.stat(parseDigest(record.envelope))) !== record.size) return undefined;
    return { digest: parseDigest(record.envelope), size: record.size, createdAt: record.createdAt };
  }

  /** The envelope's bytes, hashed again on the way out. */
  async read(envelope: StoredEnvelope): Promise<Buffer | undefined> {
    const bytes = await this.deps.store.readBytes(envelope.digest, envelope.size);
    return bytes && digestOf(bytes, envelope.digest.algorithm).hex === envelope.digest.hex ? bytes : undefined;
  }

  /**
   * The manifest served at `sha256-<hex>.att`: the publisher's attestation layers
   * first, unchanged, then the gateway's own, with cosign's layer annotations.
   */
  async attTagManifest(envelope: StoredEnvelope | undefined, upstream: ImageManifest | undefined): Promise<Buffer> {
    const layers: Record<string, unknown>[] = (upstream?.layers ?? [])
      .filter((l) => !impersonatesGateway(l.annotations))
      .map((l) => ({
        mediaType: l.mediaType,
        size: l.size,
        digest: l.digest.text,
        ...(l.annotations ? { annotations: l.annotations } : {}),
      }));
    if (envelope) {
      layers.push({
        mediaType: MediaType.dsseEnvelope,
        size: envelope.size,
        digest: envelope.digest.text,
        annotations: { [COSIGN_SIGNATURE]: '', predicateType: VSA_PREDICATE_TYPE, [GATEWAY_MARK]: GATEWAY_MARK_VALUE },
      });
    }
    const config = await this.#putJson({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    });
    return Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, size: config.size, digest: config.digest.text },
        layers,
      }),
    );
  }

  /** An OCI 1.1 artifact manifest carrying the envelope, with `subject` set, for the referrers API. */
  async referrerManifest(
    envelope: StoredEnvelope,
    subject: { mediaType: string; digest: Digest; size: number },
  ): Promise<Buffer> {
    const empty = await this.#putJson({});
    return Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        artifactType: REFERRER_ARTIFACT_TYPE,
        config: { mediaType: MediaType.ociEmpty, size: empty.size, digest: empty.digest.text },
        layers: [
          {
            mediaType: MediaType.dsseEnvelope,
            size: envelope.size,
            digest: envelope.digest.text,
            annotations: { 'in-toto.io/predicate-type': VSA_PREDICATE_TYPE },
          },
        ],
        subject: { mediaType: subject.mediaType, digest: subject.digest.text, size: subject.size },
        annotations: { [GATEWAY_MARK]: GATEWAY_MARK_VALUE, 'in-toto.io/predicate-type': VSA_PREDICATE_TYPE },
      }),
    );
  }

  async #putJson(value: unknown): Promise<{ digest: Digest; size: number }> {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = digestOf(bytes);
    await this.deps.store.putBytes(digest, bytes);
    return { digest, size: bytes.length };
  }
}

export function fingerprintOf(publicKeyPem: string): string {
  const body = publicKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return createHash('sha256').update(Buffer.from(body, 'base64')).digest('hex');
}
