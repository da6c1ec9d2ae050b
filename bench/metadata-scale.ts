import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import pg from 'pg';
import { parseDigest, type Digest } from '../oci/digest.js';
import type { MetadataStore } from '../gateway/metadata/metadata-store.js';
import { PostgresMetadataStore } from '../gateway/metadata/postgres-metadata-store.js';
import { SqliteMetadataStore } from '../gateway/metadata/sqlite-metadata-store.js';
import type { BlobStore } from '../gateway/store/blob-store.js';
import { collectGarbage } from '../gateway/store/gc.js';
import { startPostgres } from '../test/helpers/postgres.js';

/**
 * Metadata at scale: `manifests` admitted manifests in 1,000 repositories, each with
 * `links` blob links (distinct blobs: the largest indexes), a tag, an allowed decision
 * and an attestation, written straight into SQLite and into PostgreSQL. Then the
 * lookups a warm pull makes, in random order (p50/p99 of each), and a GC that retires
 * 10 % of the admissions (not pulled for 60 days) and sweeps every blob. The blob
 * store in the GC is a stand-in that lists the blobs and forgets what it is told to
 * delete: the metadata's side is what is measured.
 */
const DAY = 86_400_000;
const P = `sha256:${'e'.repeat(64)}`;
const KEYS = 'bench-key';
const REPOS = 1000;
const SAMPLES = 5000;
const hex = (n: number) => n.toString(16).padStart(64, '0');
const repoOf = (i: number) => `bench.example/team${i % REPOS}/app`;
const manifestOf = (i: number) => `sha256:${hex(i)}`;
const BLOB_BASE = 2 ** 40;
const blobOf = (links: number, i: number, j: number) => `sha256:${hex(BLOB_BASE + i * links + j)}`;

export interface ScaleResult {
  readonly values: Record<string, number | undefined>;
}

type Log = (m: string) => void;

export async function benchMetadataScale(work: string, manifests: number, links: number, log: Log) {
  const now = Date.now();
  const values: Record<string, number | undefined> = {};

  log(`metadata at scale: SQLite, ${manifests} manifests, ${manifests * links} links`);
  const file = join(work, 'scale.db');
  new SqliteMetadataStore(file).close();
  let t = Date.now();
  fillSqlite(file, manifests, links, now);
  values['SQLite fill s'] = (Date.now() - t) / 1000;
  const lite = new SqliteMetadataStore(file);
  try {
    Object.assign(values, prefixed('SQLite', await lookups(lite, manifests, links)));
    Object.assign(values, prefixed('SQLite', await gc(lite, manifests, links, now, log)));
  } finally {
    await lite.close();
  }

  const server = await startPostgres();
  try {
    log(`metadata at scale: PostgreSQL, ${manifests} manifests, ${manifests * links} links`);
    const db = await server.createDatabase('scale');
    const opts = {
      host: server.host,
      port: server.port,
      database: db.name,
      user: server.user,
      password: server.password,
    };
    await (await PostgresMetadataStore.open(opts)).close();
    t = Date.now();
    await fillPostgres(opts, manifests, links, now);
    values['PostgreSQL fill s'] = (Date.now() - t) / 1000;
    const store = await PostgresMetadataStore.open(opts);
    try {
      Object.assign(values, prefixed('PostgreSQL', await lookups(store, manifests, links)));
      Object.assign(values, prefixed('PostgreSQL', await gc(store, manifests, links, now, log)));
    } finally {
      await store.close();
    }
  } finally {
    await server.stop();
  }
  return values;
}

function prefixed(p: string, v: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [`${p} ${k}`, x]));
}

function fillSqlite(file: string, n: number, links: number, now: number): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const seq = (count: number) =>
    `WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ${count - 1})`;
  const d = (expr: string) => `'sha256:' || printf('%064x', ${expr})`;
  const fns = [
    `${seq(REPOS)} INSERT INTO repositories (name) SELECT 'bench.example/team' || i || '/app' FROM s`,
    `${seq(n)} INSERT INTO manifests (repository_id, digest, media_type, size, kind, admitted_at, policy_digest, rule, verified, subject, last_pulled_at)
       SELECT (i % ${REPOS}) + 1, ${d('i')}, 'application/vnd.oci.image.manifest.v1+json', 1000, 'image',
              ${now} - 90 * ${DAY}, '${P}', 'bench.example', 1, NULL,
              CASE WHEN i % 10 = 0 THEN ${now} - 60 * ${DAY} ELSE ${now} - (i % 30) * ${DAY} END FROM s`,
    `${seq(n)}, j(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM j WHERE j < ${links - 1})
       INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest, size)
       SELECT (i % ${REPOS}) + 1, ${d('i')}, ${d(`${BLOB_BASE} + i * ${links} + j`)}, 1048576 FROM s, j`,
    `${seq(n)} INSERT INTO tags (repository_id, tag, digest, resolved_at) SELECT (i % ${REPOS}) + 1, 'v' || i, ${d('i')}, ${now} FROM s`,
    `${seq(n)} INSERT INTO decisions (time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag)
       SELECT ${now}, 'bench.example/team' || (i % ${REPOS}) || '/app', ${d('i')}, '${P}', 1, 'bench.example', '[]', 'enforce', 1, 'v' || i FROM s`,
    `${seq(n)} INSERT INTO attestations (repository_id, subject_digest, envelope_digest, envelope_size, policy_digest, signing_keys, created_at)
       SELECT (i % ${REPOS}) + 1, ${d('i')}, ${d(`${2 ** 50} + i`)}, 900, '${P}', '${KEYS}', ${now} FROM s`,
  ];
  db.transaction(() => {
    for (const sql of fns) db.exec(sql);
  })();
  db.exec('ANALYZE');
  db.close();
}

async function fillPostgres(
  o: { host: string; port: number; database: string; user: string; password: string },
  n: number,
  links: number,
  now: number,
): Promise<void> {
  const c = new pg.Client(o);
  await c.connect();
  try {
    const d = (expr: string) => `'sha256:' || lpad(to_hex(${expr}), 64, '0')`;
    await c.query('SET synchronous_commit = off');
    await c.query(
      `INSERT INTO repositories (name) SELECT 'bench.example/team' || i || '/app' FROM generate_series(0, ${REPOS - 1}) i`,
    );
    const { rows } = await c.query<{ id: string }>('SELECT min(id) AS id FROM repositories');
    const base = Number(rows[0]?.id);
    const rid = `(i % ${REPOS}) + ${base}`;
    await c.query(
      `INSERT INTO manifests (repository_id, digest, media_type, size, kind, admitted_at, policy_digest, rule, verified, subject, last_pulled_at)
       SELECT ${rid}, ${d('i')}, 'application/vnd.oci.image.manifest.v1+json', 1000, 'image', ${now} - 90::bigint * ${DAY},
              '${P}', 'bench.example', true, NULL,
              CASE WHEN i % 10 = 0 THEN ${now} - 60::bigint * ${DAY} ELSE ${now} - (i % 30)::bigint * ${DAY} END
       FROM generate_series(0::bigint, ${n - 1}) i`,
    );
    await c.query(
      `INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest, size)
       SELECT ${rid}, ${d('i')}, ${d(`${BLOB_BASE}::bigint + i * ${links} + j`)}, 1048576
       FROM generate_series(0::bigint, ${n - 1}) i, generate_series(0, ${links - 1}) j`,
    );
    await c.query(
      `INSERT INTO tags (repository_id, tag, digest, resolved_at) SELECT ${rid}, 'v' || i, ${d('i')}, ${now} FROM generate_series(0::bigint, ${n - 1}) i`,
    );
    await c.query(
      `INSERT INTO decisions (time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag)
       SELECT ${now}, 'bench.example/team' || (i % ${REPOS}) || '/app', ${d('i')}, '${P}', true, 'bench.example', '[]', 'enforce', true, 'v' || i
       FROM generate_series(0::bigint, ${n - 1}) i`,
    );
    await c.query(
      `INSERT INTO attestations (repository_id, subject_digest, envelope_digest, envelope_size, policy_digest, signing_keys, created_at)
       SELECT ${rid}, ${d('i')}, ${d(`${2 ** 50}::bigint + i`)}, 900, '${P}', '${KEYS}', ${now} FROM generate_series(0::bigint, ${n - 1}) i`,
    );
    await c.query('VACUUM ANALYZE');
  } finally {
    await c.end();
  }
}

/** The lookups of a warm pull by tag, then of one of its layers, at random admissions. */
async function lookups(store: MetadataStore, n: number, links: number): Promise<Record<string, number>> {
  const times: Record<string, number[]> = { tag: [], manifest: [], decision: [], attestation: [], blob: [], pull: [] };
  const time = async <T>(k: string, f: () => Promise<T>): Promise<T> => {
    const t = process.hrtime.bigint();
    const r = await f();
    (times[k] as number[]).push(Number(process.hrtime.bigint() - t) / 1e6);
    return r;
  };
  for (let s = 0; s < SAMPLES; s++) {
    const i = Math.floor(Math.random() * n);
    const repo = repoOf(i);
    const start = process.hrtime.bigint();
    const tag = await time('tag', () => store.tag(repo, `v${i}`));
    const m = await time('manifest', () => store.admittedManifest(repo, manifestOf(i)));
    const ok = await time('decision', () => store.admittedFor(repo, manifestOf(i), P, `v${i}`));
    const a = await time('attestation', () => store.attestation(repo, manifestOf(i), P, KEYS));
    const b = await time('blob', () => store.admittedBlob(repo, blobOf(links, i, s % links), P));
    (times.pull as number[]).push(Number(process.hrtime.bigint() - start) / 1e6);
    if (tag?.digest !== manifestOf(i) || !m || !ok || !a || !b) throw new Error(`lookup ${i} found nothing`);
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(times)) {
    v.sort((x, y) => x - y);
    out[`${k} p50 ms`] = v[Math.floor(v.length * 0.5)] as number;
    out[`${k} p99 ms`] = v[Math.floor(v.length * 0.99)] as number;
  }
  return out;
}

async function gc(store: MetadataStore, n: number, links: number, now: number, log: Log) {
  // Every blob the admissions use, in the store's order, and the manifests and envelopes.
  const stand = new ListingStore(function* () {
    for (let i = 0; i < n; i++) for (let j = 0; j < links; j++) yield blobOf(links, i, j);
  });
  log('  GC: retire 10 %, sweep every blob');
  const t = Date.now();
  const report = await collectGarbage(stand, store, {
    rules: [{ scope: 'bench.example', unpulledDays: 45 }],
    graceMs: 0,
    now,
    dryRun: false,
  });
  const seconds = (Date.now() - t) / 1000;
  if (report.retired.length !== Math.ceil(n / 10)) throw new Error(`GC retired ${report.retired.length}`);
  if (report.deleted.length !== report.retired.length * links) throw new Error(`GC deleted ${report.deleted.length}`);
  return { 'GC of 10 % s': seconds, 'GC blobs swept': report.blobsChecked };
}

/** Lists digests and reports them old; deletes nothing real (the metadata side is measured). */
class ListingStore implements BlobStore {
  constructor(private readonly digests: () => Iterable<string>) {}
  async stat(): Promise<number | undefined> {
    return 1048576;
  }
  async modifiedAt(): Promise<number | undefined> {
    return 0;
  }
  async read(): Promise<Readable> {
    throw new Error('not read');
  }
  async putBytes(): Promise<void> {
    throw new Error('not written');
  }
  async readBytes(): Promise<Buffer | undefined> {
    return undefined;
  }
  async stage(): Promise<never> {
    throw new Error('not written');
  }
  async delete(): Promise<void> {}
  async *list(): AsyncIterable<Digest> {
    for (const d of this.digests()) yield parseDigest(d);
  }
}
