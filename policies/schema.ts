import { FULCIO_CLAIMS } from './verifiers/fulcio-identity.js';
/**
 * The JSON Schema (draft 2020-12) of the policy file format, for editors
 * (`# yaml-language-server: $schema=…`) and CI checks. The loader is the authority:
 * it reports what a schema cannot (unreadable keys, duplicate scopes, impossible
 * atLeast counts) with line and column.
 */
const digest = { type: 'string', pattern: '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$' };
const text = { type: 'string', minLength: 1 };
const requirements = { type: 'array', minItems: 1, maxItems: 64, items: { $ref: '#/$defs/requirement' } };
/** host[:port] with a dot, a port or localhost, then lower-case path components. */
const scopePattern =
  '^([a-zA-Z0-9-]+(\\.[a-zA-Z0-9-]+)+(:[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+|localhost(:[0-9]+)?|\\[[0-9a-fA-F:.]+\\](:[0-9]+)?)(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$';
const keyFiles = (what: string) => ({
  type: 'array',
  minItems: 1,
  maxItems: 64,
  items: { type: 'string', minLength: 1 },
  description: `${what}, relative to the policy file`,
});

export const POLICY_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://portcullis.dev/schemas/policy-v1.json',
  title: 'Portcullis policy',
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: {
    version: { const: 1 },
    default: {
      enum: ['reject', 'accept-anything'],
      default: 'reject',
      description: 'what happens to images no rule covers',
    },
    revoked: {
      type: 'array',
      description: 'manifest digests denied whatever signs them, also when already cached',
      items: {
        oneOf: [
          digest,
          { type: 'object', additionalProperties: false, required: ['digest'], properties: { digest, reason: text } },
        ],
      },
    },
    rules: { type: 'array', maxItems: 1000, items: { $ref: '#/$defs/rule' } },
  },
  $defs: {
    rule: {
      type: 'object',
      additionalProperties: false,
      required: ['scope'],
      properties: {
        scope: {
          type: 'string',
          pattern: scopePattern,
          description: 'host, host/namespace or host/namespace/repository; the most specific matching rule applies',
        },
        require: { ...requirements, description: 'every requirement must hold' },
        accept: { const: 'anything', description: 'admit without any signature (insecure)' },
        reject: { oneOf: [{ const: true }, { type: 'string', minLength: 1 }], description: 'deny, with this message' },
        mode: { enum: ['enforce', 'warn', 'audit'], default: 'enforce' },
        tags: { enum: ['follow', 'pin', 'require-digest'], default: 'follow' },
        index: { enum: ['either', 'signed-index', 'signed-platform'], default: 'either' },
      },
      oneOf: [{ required: ['require'] }, { required: ['accept'] }, { required: ['reject'] }],
    },
    requirement: {
      oneOf: [
        {
          type: 'object',
          additionalProperties: false,
          required: ['cosign'],
          properties: { cosign: { $ref: '#/$defs/cosign' } },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['gpg'],
          properties: { gpg: { $ref: '#/$defs/gpg' } },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['attestation'],
          properties: { attestation: { $ref: '#/$defs/attestation' } },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['notation'],
          properties: { notation: { $ref: '#/$defs/notation' } },
        },
        { type: 'object', additionalProperties: false, required: ['allOf'], properties: { allOf: requirements } },
        { type: 'object', additionalProperties: false, required: ['anyOf'], properties: { anyOf: requirements } },
        {
          type: 'object',
          additionalProperties: false,
          required: ['atLeast', 'of'],
          properties: { atLeast: { type: 'integer', minimum: 1, maximum: 64 }, of: requirements },
        },
      ],
    },
    notation: {
      type: 'object',
      additionalProperties: false,
      description: 'a Notary Project signature (JWS or COSE) whose chain reaches a trust store certificate',
      required: ['trustStores', 'trustedIdentities'],
      properties: {
        trustStores: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            ca: keyFiles('PEM or DER certificates: roots (or intermediates) signing certificates chain to'),
            signingAuthority: keyFiles('PEM or DER certificates of signing authorities (notary.x509.signingAuthority)'),
            tsa: keyFiles('PEM or DER root certificates of timestamp authorities whose countersignatures are trusted'),
          },
        },
        trustedIdentities: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          items: text,
          description: '["*"], or "x509.subject: C=…, ST=…, O=…[, …]" names the signing certificate must carry',
        },
        level: { enum: ['strict', 'permissive', 'audit'], description: 'Notation verification level (default strict)' },
        override: {
          type: 'object',
          additionalProperties: false,
          properties: {
            authenticity: { enum: ['enforce', 'log'] },
            authenticTimestamp: { enum: ['enforce', 'log'] },
            expiry: { enum: ['enforce', 'log'] },
            revocation: { enum: ['enforce', 'log', 'skip'] },
          },
        },
        verifyTimestamp: { enum: ['always', 'afterCertExpiry'] },
      },
    },
    attestation: {
      type: 'object',
      additionalProperties: false,
      description:
        'an in-toto attestation (cosign .att, or a Sigstore bundle among the referrers) whose conditions hold',
      required: ['predicateType'],
      oneOf: [{ required: ['keys'] }, { required: ['keyless'] }],
      properties: {
        predicateType: {
          oneOf: [text, { type: 'array', minItems: 1, maxItems: 16, items: text }],
          description: 'the predicate type(s), e.g. https://slsa.dev/provenance/v1',
        },
        keys: { $ref: '#/$defs/cosign/properties/keys' },
        keyless: { $ref: '#/$defs/cosign/properties/keyless' },
        conditions: {
          type: 'array',
          maxItems: 32,
          items: { ...text, maxLength: 4096 },
          description: 'CEL expressions over predicate, predicateType and subject; every one must be true',
        },
        identity: { $ref: '#/$defs/cosign/properties/identity' },
      },
    },
    cosign: {
      type: 'object',
      additionalProperties: false,
      oneOf: [{ required: ['keys'] }, { required: ['keyless'] }],
      properties: {
        keys: keyFiles('PEM public keys (cosign.pub)'),
        keyless: {
          type: 'object',
          additionalProperties: false,
          description: 'keyless signatures: a Fulcio certificate for this OIDC issuer and subject, logged in Rekor',
          allOf: [
            { oneOf: [{ required: ['issuer'] }, { required: ['issuerRegExp'] }] },
            { oneOf: [{ required: ['subject'] }, { required: ['subjectRegExp'] }] },
          ],
          properties: {
            issuer: { ...text, description: 'the OIDC issuer, exactly' },
            issuerRegExp: { ...text, description: 'the OIDC issuer, by an anchored RE2-like pattern' },
            subject: { ...text, description: "the certificate's subject (e-mail or URI), exactly" },
            subjectRegExp: { ...text, description: "the certificate's subject, by an anchored RE2-like pattern" },
            claims: {
              type: 'object',
              description: "Fulcio's extension claims the certificate must carry (GitHub Actions and other CI)",
              additionalProperties: false,
              properties: Object.fromEntries(
                Object.values(FULCIO_CLAIMS).map((name) => [
                  name,
                  {
                    oneOf: [
                      text,
                      {
                        type: 'object',
                        additionalProperties: false,
                        required: ['regExp'],
                        properties: { regExp: text },
                      },
                    ],
                  },
                ]),
              ),
            },
            trustedRoot: {
              ...text,
              description: 'a Sigstore trusted_root.json (default: the shipped public-good root)',
            },
            thresholds: {
              type: 'object',
              additionalProperties: false,
              description: 'how many verified log entries, SCTs and verified times a signature needs (default 1 each)',
              properties: {
                tlog: { type: 'integer', minimum: 0, maximum: 8 },
                sct: { type: 'integer', minimum: 0, maximum: 8 },
                timestamps: { type: 'integer', minimum: 1, maximum: 8 },
              },
            },
          },
        },
        identity: {
          oneOf: [
            { enum: ['repository', 'any'] },
            { type: 'object', additionalProperties: false, required: ['exact'], properties: { exact: text } },
            {
              type: 'object',
              additionalProperties: false,
              required: ['prefix', 'signedPrefix'],
              properties: { prefix: text, signedPrefix: text },
            },
          ],
        },
      },
    },
    gpg: {
      type: 'object',
      additionalProperties: false,
      required: ['keys'],
      properties: {
        keys: keyFiles('OpenPGP public keyrings, armored or binary (gpg --export)'),
        identity: {
          oneOf: [
            { enum: ['matchRepoDigestOrExact', 'matchRepository', 'matchExact'] },
            {
              type: 'object',
              additionalProperties: false,
              required: ['exactReference'],
              properties: {
                exactReference: {
                  type: 'string',
                  pattern: '([:@][^/]+)$',
                  description: 'a reference with a tag or digest',
                },
              },
            },
            {
              type: 'object',
              additionalProperties: false,
              required: ['exactRepository'],
              properties: { exactRepository: text },
            },
            {
              type: 'object',
              additionalProperties: false,
              required: ['remapIdentity'],
              properties: {
                remapIdentity: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['prefix', 'signedPrefix'],
                  properties: { prefix: text, signedPrefix: text },
                },
              },
            },
          ],
        },
      },
    },
  },
} as const;
