import { resolve } from 'node:path';
import type { Node } from 'yaml';
import type { YamlSource } from '../../policies/yaml-source.js';
import type { ClientAuthConfig } from './client-auth.js';

/** `clientAuth: { htpasswd, groups: { NAME: [users] }, access: [{ scope, users, groups }] }`. */
export function parseClientAuth(
  src: YamlSource,
  node: Node | null | undefined,
  base: string,
): ClientAuthConfig | undefined {
  const m = src.map(node, 'clientAuth', ['htpasswd', 'groups', 'access'], ['htpasswd', 'access']);
  if (!m) return undefined;
  const htpasswd = src.string(m.get('htpasswd'), 'clientAuth.htpasswd');
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
  if (htpasswd === undefined) return undefined;
  return { htpasswd: resolve(base, htpasswd), groups, access };
}
