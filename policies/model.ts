import type { KeyObject } from 'node:crypto';
import type { PublicKey } from 'openpgp';
import type { Digest } from '../oci/digest.js';

/**
 * The compiled policy: what the loader hands the evaluator. Keys are already parsed;
 * nothing here does I/O.
 */
export interface TrustedKey {
  /** Where the key came from, for messages: `keys/team.pub`. */
  readonly source: string;
  /** sha256 of the key's SubjectPublicKeyInfo DER, hex. */
  readonly fingerprint: string;
  readonly algorithm: 'ecdsa-p256' | 'ecdsa-p384' | 'rsa' | 'ed25519';
  readonly key: KeyObject;
}

/**
 * How the signed `critical.identity.docker-reference` must relate to the image's name.
 * - repository: equal to the repository the client asked for (host/path), ignoring tag.
 * - remap: the image name with `prefix` replaced by `signedPrefix` (images signed
 *   under another registry name and mirrored here).
 * - exact: equal to one fixed repository.
 * - any: not checked (logged as such).
 */
export type IdentityRule =
  | { readonly kind: 'repository' }
  | { readonly kind: 'remap'; readonly prefix: string; readonly signedPrefix: string }
  | { readonly kind: 'exact'; readonly repository: string }
  | { readonly kind: 'any' };

/** A string a certificate field must equal, or an anchored RE2-like pattern it must match. */
export interface IdentityMatcher {
  /** As written in the policy, for messages. */
  readonly text: string;
  readonly exact?: string | undefined;
  /** Matches the whole value (RE2 semantics, linear time). */
  readonly pattern?: { test(value: string): boolean } | undefined;
}

/** What @sigstore/verify's Verifier returns for a verified entity (the parts read here). */
export interface VerifiedSigner {
  identity?: {
    subjectAlternativeName?: string;
    extensions?: { issuer?: string };
    oids?: readonly { oid?: { id: readonly number[] } | undefined; value: Uint8Array }[];
  };
}

/** A Sigstore trusted root, ready to verify with (see verifiers/cosign-keyless.ts). */
/**
 * How many of each a keyless verification needs: verified transparency log entries,
 * SCTs from trusted CT logs, and verified times (log entry times and RFC 3161
 * timestamps) at which the certificate was valid. Default 1 each.
 */
export interface SigstoreThresholds {
  readonly tlog: number;
  readonly sct: number;
  readonly timestamps: number;
}

export interface KeylessTrust {
  /** `the Sigstore public-good root`, or the file it came from. */
  readonly source: string;
  readonly thresholds: SigstoreThresholds;
  /** The same root, verifying with other thresholds. */
  withThresholds(thresholds: SigstoreThresholds): KeylessTrust;
  /** Verifies keyless entities: certificate chain, SCTs, log entries and timestamps, signature. */
  readonly verifier: { verify(entity: unknown): VerifiedSigner };
  /** Verifies an entity signed by `key`, with the root's logs and timestamp authorities for what it carries. */
  keyedVerifier(key: KeyObject): { verify(entity: unknown): VerifiedSigner };
}

/** Keyless signing: who (OIDC issuer and certificate subject), vouched for by which trusted root. */
export interface KeylessRule {
  readonly issuer: IdentityMatcher;
  readonly subject: IdentityMatcher;
  /** Fulcio extension claims the certificate must carry (sourceRepositoryURI, buildTrigger, …), by name. */
  readonly claims?: Readonly<Record<string, IdentityMatcher>> | undefined;
  readonly trust: KeylessTrust;
}

export interface CosignRequirement {
  readonly kind: 'cosign';
  /** Key-based signatures: one of these keys. Empty for a keyless requirement. */
  readonly keys: readonly TrustedKey[];
  /** Keyless signatures (Fulcio certificate, Rekor entry): this signer. */
  readonly keyless?: KeylessRule | undefined;
  /** Key-based: the root a bundle's log entries and timestamps are checked against (default: public-good). */
  readonly logTrust?: KeylessTrust | undefined;
  readonly identity: IdentityRule;
  /** From a containers-policy.json `sigstoreSigned`: containers/image's rule, used instead of `identity`. */
  readonly signedIdentity?: GpgIdentityRule | undefined;
  /** From a containers-policy.json `sigstoreSigned`: Rekor keys, Fulcio or PKI roots (verifiers/sigstore-signed.ts). */
  readonly sigstoreSigned?: SigstoreSignedTrust | undefined;
}

/** containers-policy.json `sigstoreSigned` trust beyond keys, parsed. */
export interface SigstoreSignedTrust {
  /** `rekorPublicKeyPath(s)`/`Data(s)`: a Rekor SET by one of them is required. */
  readonly rekorKeys?: readonly KeyObject[] | undefined;
  readonly fulcio?:
    | {
        readonly roots: readonly import('node:crypto').X509Certificate[];
        readonly oidcIssuer: string;
        readonly subjectEmail: string;
      }
    | undefined;
  readonly pki?:
    | {
        readonly roots: readonly import('node:crypto').X509Certificate[];
        readonly intermediates: readonly import('node:crypto').X509Certificate[];
        readonly subjectEmail?: string | undefined;
        readonly subjectHostname?: string | undefined;
      }
    | undefined;
  /** The clock PKI certificates are checked against. */
  now(): Date;
}

/**
 * An in-toto attestation the image must carry: a statement of one of these predicate
 * types naming this digest, signed by one of `keys` or keylessly by `keyless`, whose
 * CEL conditions all hold (see conditions.ts). Found in cosign's `.att` tag and in
 * Sigstore bundles attached through the referrers API.
 */
export interface AttestationRequirement {
  readonly kind: 'attestation';
  readonly predicateTypes: readonly string[];
  readonly keys: readonly TrustedKey[];
  readonly keyless?: KeylessRule | undefined;
  readonly logTrust?: KeylessTrust | undefined;
  readonly conditions: readonly import('./conditions.js').Condition[];
  readonly identity: IdentityRule;
}

/** A named Notation trust store (`ca:acme`): the certificates a chain must reach. */
export interface NotationTrustStore {
  readonly type: 'ca' | 'signingAuthority' | 'tsa';
  readonly name: string;
  readonly certificates: readonly import('node:crypto').X509Certificate[];
}

/** A trusted identity: `x509.subject: C=US, ST=WA, O=acme` — these attributes of the signing certificate's subject. */
export interface NotationIdentity {
  readonly text: string;
  readonly attributes: ReadonlyMap<string, string>;
}

/** What a Notation validation does when it fails: fail the signature, or note it and go on (see notation.ts). */
export type NotationAction = 'enforce' | 'log' | 'skip';

/**
 * A Notary Project signature (JWS or COSE envelope, attached through the referrers
 * API): its chain reaches a certificate of one of the trust stores, its signing
 * certificate's subject is a trusted identity, and each validation is enforced or
 * logged as the verification level (and its overrides) says.
 */
export interface NotationRequirement {
  readonly kind: 'notation';
  /** The trust policy's name (trustpolicy.oci.json), or `notation` for a portcullis rule. */
  readonly name: string;
  readonly trustStores: readonly NotationTrustStore[];
  /** undefined: any identity the trust stores vouch for (`*`). */
  readonly identities?: readonly NotationIdentity[] | undefined;
  readonly level: 'strict' | 'permissive' | 'audit';
  readonly checks: {
    readonly authenticity: NotationAction;
    readonly authenticTimestamp: NotationAction;
    readonly expiry: NotationAction;
    readonly revocation: NotationAction;
  };
  readonly verifyTimestamp: 'always' | 'afterCertExpiry';
}

/** An OpenPGP public key trusted for GPG simple signing (one entry per key of a keyring file). */
export interface GpgTrustedKey {
  /** The keyring file it came from: `keys/release.gpg`. */
  readonly source: string;
  /** The primary key's fingerprint, upper-case hex (as containers/image reports it). */
  readonly fingerprint: string;
  readonly key: PublicKey;
}

/**
 * containers/image's signedIdentity rules (containers-policy.json(5)), compared with
 * the reference the client asked for (`intended`: host/repo:tag or host/repo@digest).
 */
export type GpgIdentityRule =
  | { readonly kind: 'matchRepoDigestOrExact' }
  | { readonly kind: 'matchRepository' }
  | { readonly kind: 'matchExact' }
  | { readonly kind: 'exactReference'; readonly reference: string }
  | { readonly kind: 'exactRepository'; readonly repository: string }
  | { readonly kind: 'remapIdentity'; readonly prefix: string; readonly signedPrefix: string };

export interface GpgRequirement {
  readonly kind: 'gpg';
  readonly keys: readonly GpgTrustedKey[];
  readonly identity: GpgIdentityRule;
}

/**
 * Combinators over heterogeneous requirements: allOf (every one), anyOf (at least
 * one), atLeast (at least `count` of them — k-of-n signers). Each child counts once,
 * whichever signature satisfied it.
 */
export interface CombinedRequirement {
  readonly kind: 'allOf' | 'anyOf' | 'atLeast';
  readonly count: number;
  readonly of: readonly Requirement[];
}

export type Requirement =
  CosignRequirement | GpgRequirement | AttestationRequirement | NotationRequirement | CombinedRequirement;

/** enforce: deny what fails; warn: admit and log a warning decision; audit: admit and record what enforce would decide. */
export type RuleMode = 'enforce' | 'warn' | 'audit';
/** follow: a moved tag is verified again; pin: the first verified digest stays until released; require-digest: no pulls by tag. */
export type TagMode = 'follow' | 'pin' | 'require-digest';
/** Whether a signature on an index covers the platform manifests it lists. */
export type IndexMode = 'either' | 'signed-index' | 'signed-platform';

export type RuleAction =
  | { readonly kind: 'reject'; readonly message: string | undefined }
  | { readonly kind: 'accept-anything' }
  | { readonly kind: 'require'; readonly requirements: readonly Requirement[] };

export interface Rule {
  /**
   * `host`, `host/namespace` or `host/namespace/repo` (matched at `/` boundaries, most
   * specific wins); from containers-policy.json also `host/repo:tag` or `host/repo@digest`
   * (one reference), `*.example.com` (hosts under a domain) and `` (every registry).
   */
  readonly scope: string;
  readonly match?: 'prefix' | 'reference' | 'repository' | 'wildcard' | 'transport-default' | undefined;
  readonly action: RuleAction;
  readonly mode?: RuleMode | undefined;
  readonly tags?: TagMode | undefined;
  readonly index?: IndexMode | undefined;
}

export interface CompiledPolicy {
  readonly source: string;
  /** What the file was written as. */
  readonly format?: 'portcullis' | 'containers-policy.json' | 'trustpolicy.oci.json' | undefined;
  /** Things a person should know that are not errors (parts of the file that do not apply to a gateway). */
  readonly notes?: readonly string[] | undefined;
  /** Findings with a place in the file that do not stop it from loading (overlapping key lists). */
  readonly warnings?: readonly import('./diagnostics.js').Diagnostic[] | undefined;
  /** The key files it read, as it names them (relative to the policy file unless absolute). */
  readonly keyFiles?: readonly string[] | undefined;
  /** sha256 over the policy file and every key file it names. */
  readonly digest: Digest;
  readonly defaultAction: RuleAction;
  readonly rules: readonly Rule[];
  /** Revoked manifest digests (and why): denied whatever signs them, also when already cached. */
  readonly revoked?: ReadonlyMap<string, string | undefined> | undefined;
}

/** What the decision is about. `name` is `host/repository` as clients name it. */
export interface Subject {
  readonly name: string;
  readonly digest: Digest;
  /** The tag the client asked for, when it asked by tag (GPG identity rules compare it). */
  readonly tag?: string | undefined;
  /** An index or a platform image (for the rule's `index` setting); image when unknown. */
  readonly kind?: 'image' | 'index' | undefined;
}

/** A GPG simple-signing signature blob: a binary OpenPGP signed message. */
export interface GpgSignatureEvidence {
  /** Where it was found, e.g. `lookaside signature-2`. */
  readonly source: string;
  readonly blob: Uint8Array;
  /** Where it was fetched from, for the attestation's list of inputs. */
  readonly uri?: string | undefined;
}

/** A cosign signature as found in a `sha256-<hex>.sig` manifest layer. */
export interface CosignSignatureEvidence {
  /** Where it was found, e.g. `tag sha256-….sig layer 0`. */
  readonly source: string;
  readonly payload: Uint8Array;
  /** Base64 of `dev.cosignproject.cosign/signature`, as found. */
  readonly signature: string;
  /** Keyless: `dev.sigstore.cosign/certificate` (the Fulcio leaf, PEM). */
  readonly certificate?: string | undefined;
  /** Keyless: `dev.sigstore.cosign/bundle` (the Rekor SET and entry, JSON). */
  readonly rekorBundle?: string | undefined;
  /** Keyless: `dev.sigstore.cosign/rfc3161timestamp` (JSON). */
  readonly timestamp?: string | undefined;
  /** `dev.sigstore.cosign/chain`: the certificate's chain (PEM), its last certificate the root. */
  readonly chain?: string | undefined;
}

/** A Sigstore bundle found through the referrers API (or its fallback tag). */
export interface BundleEvidence {
  /** Where it was found, e.g. `referrer sha256:… layer 0`. */
  readonly source: string;
  /** The bundle's JSON bytes, as stored. */
  readonly bundle: Uint8Array;
}

/** A DSSE envelope from cosign's `sha256-<hex>.att` tag, with its layer's keyless annotations. */
export interface DsseEvidence {
  readonly source: string;
  /** The envelope's JSON bytes (the layer). */
  readonly envelope: Uint8Array;
  readonly certificate?: string | undefined;
  readonly rekorBundle?: string | undefined;
  readonly timestamp?: string | undefined;
}

/** A Notary Project signature: the envelope layer of a signature manifest attached to the digest. */
export interface NotationEvidence {
  /** Where it was found, e.g. `referrer sha256:… layer 0`. */
  readonly source: string;
  /** `application/jose+json` or `application/cose`. */
  readonly mediaType: string;
  readonly envelope: Uint8Array;
}

export interface Evidence {
  readonly cosign: readonly CosignSignatureEvidence[];
  /** Sigstore bundles attached to the digest (image signatures and attestations). */
  readonly bundles?: readonly BundleEvidence[] | undefined;
  /** cosign `.att` attestations (DSSE envelopes). */
  readonly attestations?: readonly DsseEvidence[] | undefined;
  /** Notary Project signatures attached to the digest. */
  readonly notation?: readonly NotationEvidence[] | undefined;
  /** The manifest bytes being decided: what a message-signature bundle signs. */
  readonly manifest?: Uint8Array | undefined;
  readonly gpg?: readonly GpgSignatureEvidence[] | undefined;
  /** Problems met while gathering evidence (unreadable blob, too many layers). */
  readonly problems: readonly { readonly source: string; readonly message: string }[];
  /** The digest of an admitted index of the same repository that lists this subject. */
  readonly coveringIndex?: string | undefined;
}

export type ReasonCode =
  | 'policy.rejected'
  | 'policy.revoked'
  | 'policy.accept_anything'
  | 'policy.not_enforced'
  | 'policy.digest_required'
  | 'index.not_covered'
  | 'index.children_verified_separately'
  | 'requirement.not_enough'
  | 'signature.verified'
  | 'signature.covered_by_index'
  | 'signature.counted_elsewhere'
  | 'signature.missing'
  | 'signature.invalid'
  | 'signature.untrusted_key'
  | 'signature.certificate_untrusted'
  | 'signature.signer_untrusted'
  | 'signature.key_expired'
  | 'signature.key_revoked'
  | 'signature.digest_mismatch'
  | 'signature.identity_mismatch'
  | 'signature.payload_invalid'
  | 'signature.certificate_expired'
  | 'signature.expired'
  | 'signature.revocation_unavailable'
  | 'signature.sct_invalid'
  | 'signature.log_entry_invalid'
  | 'signature.timestamp_invalid'
  | 'attestation.missing'
  | 'attestation.condition_failed'
  | 'evidence.unavailable';

export interface Reason {
  readonly code: ReasonCode;
  readonly message: string;
  /** Index of the requirement within its rule, when the reason is about one. */
  readonly requirement?: number;
  readonly evidence?: string;
  readonly key?: string;
  /** The in-toto predicate type of the statement it is about (attestations, bundle signatures). */
  readonly predicateType?: string;
}

export interface Decision {
  /** What happens: admitted or not (in warn and audit modes, also when the verdict is a denial). */
  readonly allowed: boolean;
  /** What enforcing the rule decides. */
  readonly verdict: boolean;
  readonly mode: RuleMode;
  /** Whether the admission rests on verified signatures, so the gateway may attest it. */
  readonly attestable: boolean;
  /** The scope of the rule that decided, or `default`. */
  readonly rule: string;
  readonly policyDigest: string;
  readonly reasons: readonly Reason[];
  /** The primary reason code for a denial (the first failing requirement's best reason). */
  readonly denial?: ReasonCode;
}
