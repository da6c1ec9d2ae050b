import { resolve } from 'node:path';
import type { Node } from 'yaml';
import type { YamlSource } from '../../policies/yaml-source.js';
import { secretRef } from '../secret-ref.js';

/**
 * Where the gateway keeps blobs: files under the data directory (the default), or an
 * S3-compatible bucket several gateways share. The secret key is a reference
 * (`secretAccessKeyFile` or `secretAccessKeyEnv`), never part of the config object.
 */
export type StoreConfig =
  | { readonly driver: 'fs' }
  | {
      readonly driver: 's3';
      readonly endpoint: string;
      readonly region: string;
      readonly bucket: string;
      readonly prefix: string;
      readonly accessKeyId: string;
      readonly secretAccessKey: { readonly file?: string; readonly env?: string };
      readonly pathStyle: boolean;
      readonly tlsCa: string | undefined;
      /** Blob GETs of stored blobs answered with a redirect to a pre-signed URL valid this long; undefined: served by the gateway. */
      readonly redirectSeconds?: number | undefined;
    };

const S3_KEYS = [
  'endpoint',
  'region',
  'bucket',
  'prefix',
  'accessKeyId',
  'secretAccessKeyFile',
  'secretAccessKeyEnv',
  'pathStyle',
  'tls',
  'redirect',
] as const;

/** `store: { driver: fs | s3, … }` of the gateway config; undefined for the default. */
export function parseStoreConfig(
  src: YamlSource,
  node: Node | null | undefined,
  base: string,
): StoreConfig | undefined {
  const m = src.map(node, 'store', ['driver', ...S3_KEYS], ['driver']);
  if (!m) return undefined;
  const driver = src.oneOf(m.get('driver'), 'store.driver', ['fs', 's3'] as const);
  if (driver !== 's3') {
    for (const k of S3_KEYS) if (m.has(k)) src.report(m.get(k), `store.${k} is for driver: s3`);
    return undefined;
  }
  for (const k of ['endpoint', 'bucket', 'accessKeyId'] as const)
    if (!m.has(k)) src.report(node, `store: driver s3 needs ${k}`);
  const endpointText = src.string(m.get('endpoint'), 'store.endpoint');
  let endpoint: string | undefined;
  if (endpointText !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpointText);
    } catch {
      url = undefined;
    }
    if (!url || !['http:', 'https:'].includes(url.protocol) || url.hostname === '')
      src.report(m.get('endpoint'), 'store.endpoint is not an http(s) URL', 'https://s3.example.com');
    else if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '')
      src.report(m.get('endpoint'), 'store.endpoint takes no credentials, query or fragment');
    else endpoint = url.origin + url.pathname.replace(/\/+$/, '');
  }
  const bucket = src.string(m.get('bucket'), 'store.bucket');
  if (bucket !== undefined && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    src.report(m.get('bucket'), 'store.bucket is not a valid bucket name (3-63 of a-z 0-9 . -)');
  const prefix = m.has('prefix') ? (src.string(m.get('prefix'), 'store.prefix') ?? '') : '';
  if (prefix !== '' && (!prefix.endsWith('/') || prefix.startsWith('/') || prefix.includes('//')))
    src.report(m.get('prefix'), 'store.prefix must end with / (and not start with one): cache/');
  const accessKeyId = src.string(m.get('accessKeyId'), 'store.accessKeyId');
  const secret = secretRef(src, m, 'store', 'secretAccessKey', base);
  if (!m.has('secretAccessKeyFile') && !m.has('secretAccessKeyEnv'))
    src.report(node, 'store: driver s3 needs secretAccessKeyFile or secretAccessKeyEnv');
  const region = m.has('region') ? (src.string(m.get('region'), 'store.region') ?? 'us-east-1') : 'us-east-1';
  const pathStyle = m.has('pathStyle') ? (src.boolean(m.get('pathStyle'), 'store.pathStyle') ?? true) : true;
  let tlsCa: string | undefined;
  const tls = m.has('tls') ? src.map(m.get('tls'), 'store.tls', ['ca'], ['ca']) : undefined;
  if (tls) {
    const ca = src.string(tls.get('ca'), 'store.tls.ca');
    if (ca !== undefined) tlsCa = resolve(base, ca);
    if (endpoint?.startsWith('http:'))
      src.report(m.get('tls'), 'store.tls is for an https endpoint; this one is http://', 'https://…');
  }
  let redirectSeconds: number | undefined;
  if (m.has('redirect')) {
    const r = src.map(m.get('redirect'), 'store.redirect', ['expiresSeconds']);
    if (r)
      redirectSeconds = r.has('expiresSeconds')
        ? src.integer(r.get('expiresSeconds'), 'store.redirect.expiresSeconds', 10, 3600)
        : 300;
  }
  if (endpoint === undefined || bucket === undefined || accessKeyId === undefined || secret === undefined)
    return undefined;
  return {
    driver: 's3',
    endpoint,
    region,
    bucket,
    prefix,
    accessKeyId,
    secretAccessKey: secret,
    pathStyle,
    tlsCa,
    ...(redirectSeconds !== undefined ? { redirectSeconds } : {}),
  };
}
