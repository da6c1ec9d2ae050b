import { normalizeHost } from '../oci/reference.js';

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
