import { resolve } from 'node:path';
import type { Node } from 'yaml';
import type { YamlSource } from '../../policies/yaml-source.js';
import { secretRef } from '../secret-ref.js';

/**
 * Where the gateway keeps its metadata: the embedded SQLite file under the data
 * directory (the default), or a PostgreSQL database several gateways share. The
 * database URL names host, port, database and user; the password is a reference
 * (`passwordFile` or `passwordEnv`), never part of the URL or the config object.
 */
export type MetadataConfig =
  | { readonly driver: 'sqlite' }
  | {
      readonly driver: 'postgres';
      readonly host: string;
      readonly port: number;
      readonly database: string;
      readonly user: string;
      readonly password: { readonly file?: string; readonly env?: string } | undefined;
      readonly poolSize: number;
      /** TLS to the server, checked against this CA bundle (PEM); plain TCP without it. */
      readonly tlsCa: string | undefined;
    };

export const DEFAULT_METADATA: MetadataConfig = { driver: 'sqlite' };

/** `metadata: { driver, url, passwordFile | passwordEnv, poolSize, tls: { ca } }` of the gateway config. */
export function parseMetadataConfig(src: YamlSource, node: Node | null | undefined, base: string): MetadataConfig {
  const m = src.map(node, 'metadata', ['driver', 'url', 'passwordFile', 'passwordEnv', 'poolSize', 'tls'], ['driver']);
  if (!m) return DEFAULT_METADATA;
  const driver = src.oneOf(m.get('driver'), 'metadata.driver', ['sqlite', 'postgres'] as const);
  if (driver !== 'postgres') {
    for (const k of ['url', 'passwordFile', 'passwordEnv', 'poolSize', 'tls'])
      if (m.has(k)) src.report(m.get(k), `metadata.${k} is for driver: postgres`);
    return DEFAULT_METADATA;
  }
  const text = src.string(m.get('url'), 'metadata.url');
  if (text === undefined) {
    if (!m.has('url')) src.report(node, 'metadata: driver postgres needs url: postgres://USER@HOST:PORT/DATABASE');
    return DEFAULT_METADATA;
  }
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  const at = m.get('url');
  const hint = 'postgres://USER@HOST:PORT/DATABASE, the password by passwordFile or passwordEnv';
  if (!url || !['postgres:', 'postgresql:'].includes(url.protocol) || url.hostname === '')
    return (src.report(at, `metadata.url is not a postgres:// URL`, hint), DEFAULT_METADATA);
  // Never echo the URL: it may hold the very password this refuses.
  if (url.password !== '') return (src.report(at, 'metadata.url must not carry a password', hint), DEFAULT_METADATA);
  let database: string;
  let user: string;
  try {
    database = decodeURIComponent(url.pathname.replace(/^\//, ''));
    user = decodeURIComponent(url.username);
  } catch {
    return (src.report(at, 'metadata.url has a malformed %-escape', hint), DEFAULT_METADATA);
  }
  if (url.port === '0') return (src.report(at, 'metadata.url: port 0 is not a server port', hint), DEFAULT_METADATA);
  if (user === '' || database === '' || database.includes('/'))
    return (src.report(at, 'metadata.url must name a user and one database', hint), DEFAULT_METADATA);
  if (url.search !== '' || url.hash !== '')
    return (src.report(at, 'metadata.url takes no query parameters or fragment', hint), DEFAULT_METADATA);
  const password = secretRef(src, m, 'metadata', 'password', base);
  const poolSize = m.has('poolSize') ? (src.integer(m.get('poolSize'), 'metadata.poolSize', 1, 100) ?? 10) : 10;
  let tlsCa: string | undefined;
  const tls = m.has('tls') ? src.map(m.get('tls'), 'metadata.tls', ['ca'], ['ca']) : undefined;
  if (tls) {
    const ca = src.string(tls.get('ca'), 'metadata.tls.ca');
    if (ca !== undefined) tlsCa = resolve(base, ca);
  }
  return {
    driver: 'postgres',
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? 5432 : Number(url.port),
    database,
    user,
    password,
    poolSize,
    tlsCa,
  };
}
