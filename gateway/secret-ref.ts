import { resolve } from 'node:path';
import type { Node } from 'yaml';
import type { YamlSource } from '../policies/yaml-source.js';

/**
 * A secret named by reference in a config map: `<name>File` (a path, relative to the
 * config's folder) or `<name>Env` (an environment variable), never both, never inline.
 * Undefined when neither is given (the caller says whether that is allowed).
 */
export function secretRef(
  src: YamlSource,
  m: Map<string, Node | null>,
  where: string,
  name: string,
  base: string,
): { file?: string; env?: string } | undefined {
  const fileKey = `${name}File`;
  const envKey = `${name}Env`;
  if (m.has(fileKey) && m.has(envKey)) {
    src.report(m.get(envKey), `${where}: set ${fileKey} or ${envKey}, not both`);
    return undefined;
  }
  if (m.has(fileKey)) {
    const f = src.string(m.get(fileKey), `${where}.${fileKey}`);
    return f === undefined ? undefined : { file: resolve(base, f) };
  }
  if (m.has(envKey)) {
    const e = src.string(m.get(envKey), `${where}.${envKey}`);
    return e === undefined ? undefined : { env: e };
  }
  return undefined;
}
