import { isRepositoryComponent, isValidHost, normalizeHost } from '../oci/reference.js';

/**
 * Scopes name a registry host, a namespace under it, or one repository. A scope
 * matches a name equal to it or below it at a `/` boundary: `reg.io/team` matches
 * `reg.io/team/app` but not `reg.io/teamster`.
 */
export function normalizeScope(scope: string): string {
  const slash = scope.indexOf('/');
  const host = slash < 0 ? scope : scope.slice(0, slash);
  return normalizeHost(host) + (slash < 0 ? '' : scope.slice(slash));
}

export function scopeMatches(scope: string, name: string): boolean {
  return name === scope || name.startsWith(`${scope}/`);
}

/** The most specific (longest) matching scope, or undefined. */
export function mostSpecific<T extends { scope: string }>(rules: readonly T[], name: string): T | undefined {
  let best: T | undefined;
  for (const rule of rules) {
    if (scopeMatches(rule.scope, name) && (best === undefined || rule.scope.length > best.scope.length)) best = rule;
  }
  return best;
}

/**
 * The rule for a subject, in containers/image's order of specificity: a rule for this
 * exact reference (tag, or digest when asked for by digest) or exactly this repository (Notation's
 * registryScopes), then the longest
 * matching host/namespace/repository scope, then the longest matching `*.domain`
 * wildcard (host without port), then the transport default (``).
 */
export function selectRule<T extends { scope: string; match?: string | undefined }>(
  rules: readonly T[],
  subject: { name: string; tag?: string | undefined; digest?: { text: string } | undefined },
): T | undefined {
  const ref =
    subject.tag !== undefined ? `${subject.name}:${subject.tag}` : `${subject.name}@${subject.digest?.text ?? ''}`;
  const exact =
    rules.find((r) => r.match === 'reference' && r.scope === ref) ??
    rules.find((r) => r.match === 'repository' && r.scope === subject.name);
  if (exact) return exact;
  const prefix = mostSpecific(
    rules.filter((r) => r.match === undefined || r.match === 'prefix'),
    subject.name,
  );
  if (prefix) return prefix;
  const host = (subject.name.split('/')[0] ?? '').replace(/:\d+$/, '');
  let wildcard: T | undefined;
  for (const r of rules) {
    if (r.match !== 'wildcard') continue;
    const domain = r.scope.slice(1);
    if (host.endsWith(domain) && (wildcard === undefined || r.scope.length > wildcard.scope.length)) wildcard = r;
  }
  return wildcard ?? rules.find((r) => r.match === 'transport-default');
}

/** A prefix for identity remapping: host[:port] or a fully expanded host/namespace, without tag or digest. */
export function isIdentityPrefix(text: string): boolean {
  const host = text.split('/')[0] ?? '';
  if (!isValidHost(host) || text.includes('@') || text.endsWith('/')) return false;
  const rest = text.slice(host.length + 1);
  return rest === '' || (!rest.includes(':') && rest.split('/').every(isRepositoryComponent));
}
