import { normalizeHost, parseImageReference } from '../oci/reference.js';
import type { GpgIdentityRule } from './model.js';

/**
 * containers/image's reference matching for signedIdentity (policy_reference_match.go,
 * FORMATS §3.5), on normalized references: `name` is host/path, `text` is
 * host/path[:tag][@digest]. "Name-only" references (no tag, no digest) match only
 * where a repository is compared.
 */
export interface Ref {
  readonly name: string;
  readonly text: string;
  readonly nameOnly: boolean;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export function parseRef(text: string): Ref | undefined {
  let ref;
  try {
    ref = parseImageReference(text);
  } catch {
    return undefined;
  }
  const at = text.indexOf('@');
  const beforeDigest = at >= 0 ? text.slice(0, at) : text;
  const hasTag = beforeDigest.lastIndexOf(':') > beforeDigest.lastIndexOf('/');
  const tag = hasTag ? ref.tag : undefined;
  const digest = ref.digest?.text;
  const name = `${ref.host}/${ref.repository}`;
  return {
    name,
    tag,
    digest,
    nameOnly: tag === undefined && digest === undefined,
    text: `${name}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`,
  };
}

/** The reference a client asked for: by tag, or else by digest. */
export function intendedRef(name: string, tag: string | undefined, digest: string): Ref {
  return tag !== undefined
    ? { name, tag, digest: undefined, nameOnly: false, text: `${name}:${tag}` }
    : { name, tag: undefined, digest, nameOnly: false, text: `${name}@${digest}` };
}

/** Undefined when `signed` (critical.identity.docker-reference) is acceptable, else why not. */
export function gpgIdentityProblem(rule: GpgIdentityRule, signedText: string, intended: Ref): string | undefined {
  const signed = parseRef(signedText);
  if (!signed) return `signed identity ${JSON.stringify(signedText.slice(0, 200))} is not a valid image reference`;
  // containers/image compares references as written after docker.io's defaults (it
  // reads index.docker.io as docker.io): a host spelled another way (DOCKER.IO,
  // registry-1.docker.io, host:443) is another host.
  const first = signedText.split('/')[0] ?? '';
  if (
    signedText.includes('/') &&
    (first.includes('.') || first.includes(':') || first === 'localhost') &&
    first !== 'index.docker.io' &&
    normalizeHost(first) !== first
  ) {
    return `signed identity ${JSON.stringify(signedText.slice(0, 200))} writes its registry as ${JSON.stringify(first)}, which containers/image does not take for ${normalizeHost(first)}`;
  }
  const says = `signed identity ${signed.text}`;
  switch (rule.kind) {
    case 'matchRepoDigestOrExact':
      return repoDigestOrExact(signed, intended);
    case 'matchExact':
      if (signed.nameOnly) return `${says} names no tag or digest; matchExact needs one`;
      return signed.text === intended.text ? undefined : `${says} is not exactly ${intended.text} (matchExact)`;
    case 'matchRepository':
      return signed.name === intended.name
        ? undefined
        : `${says} is not in repository ${intended.name} (matchRepository)`;
    case 'exactReference':
      if (signed.nameOnly) return `${says} names no tag or digest; exactReference needs one`;
      return signed.text === rule.reference ? undefined : `${says} is not ${rule.reference} (exactReference)`;
    case 'exactRepository':
      return signed.name === rule.repository
        ? undefined
        : `${says} is not in repository ${rule.repository} (exactRepository)`;
    case 'remapIdentity': {
      if (intended.name !== rule.prefix && !intended.name.startsWith(`${rule.prefix}/`))
        return repoDigestOrExact(signed, intended);
      const remapped = parseRef(rule.signedPrefix + intended.text.slice(rule.prefix.length));
      if (!remapped)
        return `${intended.text} remapped with ${rule.prefix} → ${rule.signedPrefix} is not a valid reference`;
      return repoDigestOrExact(signed, remapped);
    }
  }
}

function repoDigestOrExact(signed: Ref, intended: Ref): string | undefined {
  const says = `signed identity ${signed.text}`;
  if (signed.nameOnly) return `${says} names no tag or digest (matchRepoDigestOrExact)`;
  if (intended.tag !== undefined)
    return signed.text === intended.text ? undefined : `${says} is not ${intended.text} (matchRepoDigestOrExact)`;
  if (intended.digest !== undefined)
    return signed.name === intended.name
      ? undefined
      : `${says} is not in repository ${intended.name} (matchRepoDigestOrExact)`;
  return `${intended.text} names no tag or digest`;
}
