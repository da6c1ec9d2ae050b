import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Node } from 'yaml';
import { isRepositoryComponent, isValidHost, normalizeHost } from '../oci/reference.js';
import type { Diagnostic } from '../policies/diagnostics.js';
import { LoadError } from '../policies/errors.js';
import { YamlSource } from '../policies/yaml-source.js';

/**
 * A registries.d directory (containers-registries.d(5), the files podman and skopeo
 * read from /etc/containers/registries.d): where each registry, namespace or
 * repository publishes its GPG signatures. `default-docker` applies where no `docker`
 * scope does; the most specific scope wins. Read strictly: unknown keys, a scope
 * defined twice (in one file or two), two `default-docker` sections, scopes with a tag
 * or digest, and lookasides that are not absolute http(s) or file URLs are load
 * errors with file, line and column. `lookaside-staging` / `sigstore-staging` (where
 * signers write) and `use-sigstore-attachments` are accepted and do not matter here.
 */
export interface RegistriesD {
  /** The lookaside for a repository (`host/path`), or undefined. */
  lookasideFor(name: string): string | undefined;
}

const SCOPE_KEYS = ['lookaside', 'lookaside-staging', 'sigstore', 'sigstore-staging', 'use-sigstore-attachments'];

export function loadRegistriesD(dir: string): RegistriesD {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .sort();
  } catch (err) {
    throw new LoadError('CONFIG_INVALID', [
      { file: dir, line: 1, column: 1, message: `cannot read the registries.d directory: ${(err as Error).message}` },
    ]);
  }
  const diagnostics: Diagnostic[] = [];
  const scopes = new Map<string, { lookaside: string | undefined; file: string }>();
  let fallback: { lookaside: string | undefined; file: string } | undefined;
  for (const name of files) {
    const file = join(dir, name);
    const src = new YamlSource(file, readFileSync(file, 'utf8'));
    const top =
      src.root === undefined || src.root === null
        ? undefined
        : src.map(src.root, 'the file', ['default-docker', 'docker']);
    const section = (node: Node | null | undefined, where: string): string | undefined => {
      const m = src.map(node, where, SCOPE_KEYS);
      if (!m) return undefined;
      if (m.has('lookaside') && m.has('sigstore'))
        src.report(node, `${where}: lookaside and its old name sigstore are both set`);
      if (m.has('use-sigstore-attachments'))
        src.boolean(m.get('use-sigstore-attachments'), `${where}.use-sigstore-attachments`);
      const key = m.has('lookaside') ? 'lookaside' : m.has('sigstore') ? 'sigstore' : undefined;
      if (key === undefined) return undefined;
      const url = src.string(m.get(key), `${where}.${key}`);
      let parsed: URL | undefined;
      try {
        parsed = url === undefined ? undefined : new URL(url);
      } catch {
        parsed = undefined;
      }
      if (
        parsed &&
        ['http:', 'https:', 'file:'].includes(parsed.protocol) &&
        !parsed.username &&
        !parsed.password &&
        !parsed.search &&
        !parsed.hash
      )
        return parsed.href.replace(/\/+$/, '');
      if (url !== undefined)
        src.report(m.get(key), `${where}.${key} must be an absolute http(s):// or file:// URL without credentials`);
      return undefined;
    };
    if (top?.has('default-docker')) {
      if (fallback) src.report(top.get('default-docker'), `default-docker is defined in ${fallback.file} already`);
      else fallback = { lookaside: section(top.get('default-docker'), 'default-docker'), file };
    }
    if (top?.has('docker')) {
      for (const [scope, node] of src.map(top.get('docker'), 'docker', undefined) ?? []) {
        const where = `docker[${JSON.stringify(scope)}]`;
        const host = scope.split('/')[0] ?? '';
        const path = scope.includes('/') ? scope.slice(host.length + 1).split('/') : [];
        if (!isValidHost(host) || normalizeHost(host) !== host || !path.every(isRepositoryComponent)) {
          src.report(
            node,
            `${where}: not a registry, namespace or repository scope`,
            'host[:port][/namespace[/repository]], fully expanded, without tag or digest (docker.io/library/busybox)',
          );
          continue;
        }
        const seen = scopes.get(scope);
        if (seen) {
          src.report(node, `${where} is defined in ${seen.file} already`);
          continue;
        }
        scopes.set(scope, { lookaside: section(node, where), file });
      }
    }
    diagnostics.push(...src.diagnostics);
  }
  if (diagnostics.length > 0) throw new LoadError('CONFIG_INVALID', diagnostics);
  return {
    lookasideFor(name: string): string | undefined {
      // The repository, then each namespace up to the host; then default-docker.
      for (let scope = name; scope !== ''; scope = scope.includes('/') ? scope.slice(0, scope.lastIndexOf('/')) : '') {
        const hit = scopes.get(scope);
        if (hit) return hit.lookaside;
      }
      return fallback?.lookaside;
    },
  };
}
