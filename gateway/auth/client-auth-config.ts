import { resolve } from 'node:path';
import type { Node } from 'yaml';
import type { YamlSource } from '../../policies/yaml-source.js';
import type { ClientAuthConfig } from './client-auth.js';

/**
 * `clientAuth: { htpasswd, tokens: { expiresSeconds, service, realm } | false, groups: { NAME: [users] },
 * access: [{ scope, users, groups }] }`. `certificates`: tls.clientCa signs users in too.
 */
export function parseClientAuth(
  src: YamlSource,
  node: Node | null | undefined,
  base: string,
  certificates: boolean,
): ClientAuthConfig | undefined {
  const m = src.map(node, 'clientAuth', ['htpasswd', 'tokens', 'groups', 'access'], ['access']);
  if (!m) return undefined;
  const htpasswd = m.has('htpasswd') ? src.string(m.get('htpasswd'), 'clientAuth.htpasswd') : undefined;
  if (!m.has('htpasswd') && !certificates)
    src.report(
      node,
      'clientAuth needs users: an htpasswd file, or tls.clientCa for certificates',
      'htpasswd: htpasswd',
    );
  const tokens = parseTokens(src, m.get('tokens') ?? undefined, m.has('tokens'));
  const names = (n: Node | null | undefined, where: string): string[] =>
    (src.seq(n, where) ?? []).flatMap((x, i) => {
      const s = src.string(x, `${where}[${i}]`);
      return s === undefined ? [] : [s];
    });
  const groups: Record<string, string[]> = {};
  const g = m.has('groups') ? src.map(m.get('groups'), 'clientAuth.groups', undefined) : undefined;
  for (const [name, members] of g ?? []) groups[name] = names(members, `clientAuth.groups.${name}`);
  const access: ClientAuthConfig['access'][number][] = [];
  for (const [i, a] of (src.seq(m.get('access'), 'clientAuth.access') ?? []).entries()) {
    const where = `clientAuth.access[${i}]`;
    const am = src.map(a, where, ['scope', 'users', 'groups'], ['scope']);
    if (!am) continue;
    const scope = src.string(am.get('scope'), `${where}.scope`);
    if (scope !== undefined && (scope === '' || scope.endsWith('/') || /\s/.test(scope)))
      src.report(am.get('scope'), `${where}.scope is not a registry/repository prefix`, 'ghcr.io/team');
    const users = am.has('users') ? names(am.get('users'), `${where}.users`) : [];
    const gs = am.has('groups') ? names(am.get('groups'), `${where}.groups`) : [];
    for (const x of gs) if (!Object.hasOwn(groups, x)) src.report(am.get('groups'), `${where}: no group ${x}`);
    if (users.length === 0 && gs.length === 0) src.report(a, `${where} lets nobody pull: give users or groups`);
    if (scope !== undefined) access.push({ scope, users, groups: gs });
  }
  if (src.diagnostics.length > 0) return undefined;
  return {
    htpasswd: htpasswd === undefined ? undefined : resolve(base, htpasswd),
    tokens,
    certificates,
    groups,
    access,
  };
}

/** Tokens are on unless `tokens: false`; a realm, when given, is the token endpoint's absolute URL. */
function parseTokens(src: YamlSource, node: Node | null | undefined, given: boolean): ClientAuthConfig['tokens'] {
  const fallback = { service: 'portcullis', expiresSeconds: 300 };
  if (!given) return fallback;
  if (src.isScalarValue(node)) return src.boolean(node, 'clientAuth.tokens') === false ? undefined : fallback;
  const t = src.map(node, 'clientAuth.tokens', ['expiresSeconds', 'service', 'realm'], []);
  if (!t) return fallback;
  const expiresSeconds = t.has('expiresSeconds')
    ? (src.integer(t.get('expiresSeconds'), 'clientAuth.tokens.expiresSeconds', 30, 86_400) ?? 300)
    : 300;
  const service = t.has('service') ? (src.string(t.get('service'), 'clientAuth.tokens.service') ?? '') : 'portcullis';
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(service))
    src.report(t.get('service'), 'clientAuth.tokens.service is a plain name', 'portcullis');
  const realm = t.has('realm') ? src.string(t.get('realm'), 'clientAuth.tokens.realm') : undefined;
  if (realm !== undefined && !/^https?:\/\/[^/\s"]+\/[^\s"]*$/.test(realm))
    src.report(
      t.get('realm'),
      'clientAuth.tokens.realm is the absolute URL of the token endpoint',
      'https://gateway.example.com/v2/_portcullis/token',
    );
  return { service, expiresSeconds, ...(realm !== undefined ? { realm } : {}) };
}
