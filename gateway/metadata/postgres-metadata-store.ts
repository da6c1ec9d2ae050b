import { isIP } from 'node:net';
import pg from 'pg';
import { GatewayError } from '../errors.js';
import { pageByRepository, subjectGone } from './metadata-store.js';
import type {
  Admission,
  AdmittedManifest,
  AttestationRecord,
  DecisionRecord,
  FillLeases,
  ManifestKind,
  ManifestPageRow,
  MetadataStore,
  PinRecord,
  TagRecord,
} from './metadata-store.js';

/**
 * The MetadataStore on PostgreSQL, for several gateways sharing one state: an image
 * admitted by one replica is served by all. Migrations are numbered and applied at open
 * under a transaction-scoped advisory lock, so replicas starting together migrate once
 * and the others wait and find the schema current; a database newer than this program
 * is refused. Times and sizes are bigint columns read back as numbers (all below 2^53).
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE repositories (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE);
   CREATE TABLE manifests (
     repository_id BIGINT NOT NULL REFERENCES repositories(id),
     digest TEXT NOT NULL, media_type TEXT NOT NULL, size BIGINT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('image','index','attachment')),
     admitted_at BIGINT NOT NULL, policy_digest TEXT NOT NULL, rule TEXT NOT NULL DEFAULT '',
     verified BOOLEAN NOT NULL DEFAULT FALSE, subject TEXT,
     PRIMARY KEY (repository_id, digest));
   CREATE INDEX manifests_subject ON manifests (repository_id, subject) WHERE kind = 'attachment';
   CREATE TABLE manifest_blobs (
     repository_id BIGINT NOT NULL, manifest_digest TEXT NOT NULL, blob_digest TEXT NOT NULL, size BIGINT NOT NULL,
     PRIMARY KEY (repository_id, blob_digest, manifest_digest));
   CREATE INDEX manifest_blobs_manifest ON manifest_blobs (repository_id, manifest_digest);
   CREATE TABLE manifest_children (
     repository_id BIGINT NOT NULL, index_digest TEXT NOT NULL, child_digest TEXT NOT NULL,
     PRIMARY KEY (repository_id, child_digest, index_digest));
   CREATE INDEX manifest_children_index ON manifest_children (repository_id, index_digest);
   CREATE TABLE tags (
     repository_id BIGINT NOT NULL REFERENCES repositories(id), tag TEXT NOT NULL, digest TEXT NOT NULL,
     resolved_at BIGINT NOT NULL, PRIMARY KEY (repository_id, tag));
   CREATE TABLE decisions (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time BIGINT NOT NULL, repository TEXT NOT NULL,
     digest TEXT NOT NULL, policy_digest TEXT NOT NULL, allowed BOOLEAN NOT NULL, rule TEXT NOT NULL,
     reasons TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'enforce', verdict BOOLEAN, tag TEXT);
   CREATE INDEX decisions_digest ON decisions (digest, repository, id);
   CREATE INDEX decisions_repository ON decisions (repository, id);
   CREATE TABLE attestations (
     repository_id BIGINT NOT NULL REFERENCES repositories(id), subject_digest TEXT NOT NULL,
     envelope_digest TEXT NOT NULL, envelope_size BIGINT NOT NULL, policy_digest TEXT NOT NULL,
     signing_keys TEXT NOT NULL, created_at BIGINT NOT NULL,
     PRIMARY KEY (repository_id, subject_digest, policy_digest, signing_keys));
   CREATE TABLE pins (
     repository_id BIGINT NOT NULL REFERENCES repositories(id), tag TEXT NOT NULL, digest TEXT NOT NULL,
     pinned_at BIGINT NOT NULL, upstream_digest TEXT, PRIMARY KEY (repository_id, tag));`,
  // 2: fill leases (one upstream fetch of a blob for the whole fleet).
  `CREATE TABLE blob_fills (fill TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL);`,
  // 3: retention (when a manifest was last served) and GC's question of a blob.
  `ALTER TABLE manifests ADD COLUMN last_pulled_at BIGINT NOT NULL DEFAULT 0;
   UPDATE manifests SET last_pulled_at = admitted_at;
   CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);
   CREATE INDEX manifests_digest ON manifests (digest);
   CREATE INDEX attestations_envelope ON attestations (envelope_digest);`,
  // 4: GC's and fsck's walk in byte order, one index range at a time (manifestPage).
  `CREATE INDEX repositories_name_bytes ON repositories (name COLLATE "C");
   CREATE INDEX manifests_digest_bytes ON manifests (repository_id, digest COLLATE "C");`,
];

/** The database's own clock in milliseconds: every replica's leases are timed by one clock. */
const DB_NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** An arbitrary constant naming this program's migration lock among the database's advisory locks. */
const MIGRATION_LOCK = 7_301_999_551;
/** And the one that lets one replica at a time collect garbage. */
const GC_LOCK = 7_301_999_552;

export interface PostgresOptions {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string | undefined;
  /** Connections per gateway (default 10). */
  readonly poolSize?: number | undefined;
  readonly connectTimeoutMs?: number | undefined;
  /** Open an existing schema without migrating it (tools that only read): anything but the current version is refused. */
  readonly migrate?: boolean | undefined;
  /** PEM CA bundle: the connection is TLS, and the server's certificate must chain to it and name `host`. */
  readonly tlsCa?: string | undefined;
}

const BIGINT = 20;
const typeParser = (oid: number, format?: string): ((v: string) => unknown) =>
  oid === BIGINT ? (v: string) => Number(v) : (pg.types.getTypeParser(oid, format as 'text') as (v: string) => unknown);

/** TLS servername: a host name (an address is checked against the certificate's IP SANs without SNI). */
const sniName = (host: string): string | undefined => (isIP(host) === 0 ? host : undefined);

type Queryable = Pick<pg.PoolClient, 'query'>;

export class PostgresMetadataStore implements MetadataStore {
  readonly #pool: pg.Pool;
  /** Repository ids never change once made: remembered per name. */

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  static async open(o: PostgresOptions): Promise<PostgresMetadataStore> {
    const pool = new pg.Pool({
      host: o.host,
      port: o.port,
      database: o.database,
      user: o.user,
      password: o.password,
      max: o.poolSize ?? 10,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 10_000,
      // A held lock or a stuck server fails the request instead of hanging it.
      statement_timeout: 30_000,
      query_timeout: 35_000,
      application_name: 'portcullis',
      ...(o.tlsCa !== undefined ? { ssl: { ca: o.tlsCa, rejectUnauthorized: true, servername: sniName(o.host) } } : {}),
      types: { getTypeParser: typeParser } as pg.CustomTypesConfig,
    });
    // An idle connection the server drops must not take the process down.
    pool.on('error', () => undefined);
    try {
      if (o.migrate === false) await checkSchema(pool);
      else await migrate(pool);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PostgresMetadataStore(pool);
  }

  async #tx<T>(f: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const out = await f(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  /**
   * The id of repository `name`, made if new. Asked of the database every time, not
   * remembered: ids are the database's, and one restored or rebuilt under a running
   * gateway may give a name another id (a remembered one would file rows elsewhere).
   */
  async #repo(q: Queryable, name: string): Promise<number> {
    const select = { name: 'repository-id', text: 'SELECT id FROM repositories WHERE name = $1', values: [name] };
    const known = (await q.query<{ id: number }>(select)).rows[0]?.id;
    if (known !== undefined) return known;
    const ins = await q.query<{ id: number }>(
      'INSERT INTO repositories (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id',
      [name],
    );
    // Another replica may have made it concurrently: then a new statement sees its row.
    const id = ins.rows[0]?.id ?? (await q.query<{ id: number }>(select)).rows[0]?.id;
    if (id === undefined) throw new Error(`repository ${name} vanished`);
    return id;
  }

  readonly leases: FillLeases = {
    acquire: async (fill, holder, ttlMs) => {
      const { rowCount } = await this.#pool.query(
        `INSERT INTO blob_fills (fill, holder, expires_at) VALUES ($1, $2, ${DB_NOW_MS} + $3)
         ON CONFLICT (fill) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE blob_fills.expires_at < ${DB_NOW_MS} OR blob_fills.holder = EXCLUDED.holder`,
        [fill, holder, ttlMs],
      );
      return rowCount === 1;
    },
    renew: async (fill, holder, ttlMs) => {
      const { rowCount } = await this.#pool.query(
        `UPDATE blob_fills SET expires_at = ${DB_NOW_MS} + $3 WHERE fill = $1 AND holder = $2`,
        [fill, holder, ttlMs],
      );
      return rowCount === 1;
    },
    release: async (fill, holder) => {
      await this.#pool.query('DELETE FROM blob_fills WHERE fill = $1 AND holder = $2', [fill, holder]);
    },
  };

  async admittedManifest(repository: string, digest: string): Promise<AdmittedManifest | undefined> {
    const { rows } = await this.#pool.query<{
      digest: string;
      media_type: string;
      size: number;
      kind: ManifestKind;
      policy_digest: string;
      rule: string;
      verified: boolean;
      subject: string | null;
    }>({
      name: 'admitted-manifest',
      text: `SELECT m.digest, m.media_type, m.size, m.kind, m.policy_digest, m.rule, m.verified, m.subject
       FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2`,
      values: [repository, digest],
    });
    const row = rows[0];
    return row
      ? {
          digest: row.digest,
          mediaType: row.media_type,
          size: row.size,
          kind: row.kind,
          policyDigest: row.policy_digest,
          rule: row.rule,
          verified: row.verified,
          ...(row.subject !== null ? { subject: row.subject } : {}),
        }
      : undefined;
  }

  async admit(repository: string, a: Admission, now: number): Promise<void> {
    await this.#tx(async (c) => {
      const id = await this.#repo(c, repository);
      // An attachment is kept only with its subject, held (FOR SHARE) until this commits: a
      // withdrawal locks the subject first, so it either waits and then takes the attachment
      // along, or has already gone and the attachment is refused.
      if (a.kind === 'attachment' && a.subject !== undefined) {
        const held = await c.query({
          name: 'admit-subject',
          text: 'SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR SHARE',
          values: [id, a.subject],
        });
        if (held.rowCount !== 1) throw subjectGone(repository, a.subject);
      }
      await c.query(
        `INSERT INTO manifests (repository_id, digest, media_type, size, kind, admitted_at, policy_digest, rule, verified, subject, last_pulled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6)
         ON CONFLICT (repository_id, digest) DO UPDATE SET media_type = EXCLUDED.media_type, size = EXCLUDED.size,
           kind = EXCLUDED.kind, admitted_at = EXCLUDED.admitted_at, policy_digest = EXCLUDED.policy_digest,
           rule = EXCLUDED.rule, verified = EXCLUDED.verified, subject = EXCLUDED.subject,
           last_pulled_at = EXCLUDED.last_pulled_at`,
        [
          id,
          a.digest,
          a.mediaType,
          a.size,
          a.kind,
          now,
          a.policyDigest,
          a.rule ?? '',
          a.verified === true,
          a.subject ?? null,
        ],
      );
      await c.query('DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2', [id, a.digest]);
      await c.query('DELETE FROM manifest_children WHERE repository_id = $1 AND index_digest = $2', [id, a.digest]);
      if (a.blobs.length > 0)
        await c.query(
          `INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest, size)
           SELECT $1, $2, d, s FROM unnest($3::text[], $4::bigint[]) AS t(d, s) ON CONFLICT DO NOTHING`,
          [id, a.digest, a.blobs.map((b) => b.digest), a.blobs.map((b) => b.size)],
        );
      if (a.children.length > 0)
        await c.query(
          `INSERT INTO manifest_children (repository_id, index_digest, child_digest)
           SELECT $1, $2, d FROM unnest($3::text[]) AS t(d) ON CONFLICT DO NOTHING`,
          [id, a.digest, [...a.children]],
        );
    });
  }

  async admittedBlob(
    repository: string,
    digest: string,
    policyDigest: string,
  ): Promise<{ size: number; attachmentOnly: boolean } | undefined> {
    const { rows } = await this.#pool.query<{ size: number; kind: ManifestKind }>({
      name: 'admitted-blob',
      text: `SELECT b.size, m.kind FROM manifest_blobs b JOIN repositories r ON r.id = b.repository_id
       JOIN manifests m ON m.repository_id = b.repository_id AND m.digest = b.manifest_digest
       WHERE r.name = $1 AND b.blob_digest = $2 AND m.policy_digest = $3
       ORDER BY m.kind = 'attachment', m.admitted_at LIMIT 1`,
      values: [repository, digest, policyDigest],
    });
    const row = rows[0];
    return row ? { size: row.size, attachmentOnly: row.kind === 'attachment' } : undefined;
  }

  async listedByIndex(repository: string, digest: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `SELECT 1 FROM manifest_children c JOIN repositories r ON r.id = c.repository_id
       JOIN manifests m ON m.repository_id = c.repository_id AND m.digest = c.index_digest
       WHERE r.name = $1 AND c.child_digest = $2 AND m.kind = 'index' LIMIT 1`,
      [repository, digest],
    );
    return (rowCount ?? 0) > 0;
  }

  async coveringIndex(
    repository: string,
    digest: string,
    policyDigest: string,
    rule: string,
  ): Promise<string | undefined> {
    const { rows } = await this.#pool.query<{ index_digest: string }>(
      `SELECT c.index_digest FROM manifest_children c JOIN repositories r ON r.id = c.repository_id
       JOIN manifests m ON m.repository_id = c.repository_id AND m.digest = c.index_digest
       WHERE r.name = $1 AND c.child_digest = $2 AND m.kind = 'index' AND m.policy_digest = $3 AND m.rule = $4
         AND m.verified LIMIT 1`,
      [repository, digest, policyDigest, rule],
    );
    return rows[0]?.index_digest;
  }

  async tag(repository: string, tag: string): Promise<TagRecord | undefined> {
    const { rows } = await this.#pool.query<{ digest: string; resolved_at: number }>({
      name: 'tag',
      text: 'SELECT t.digest, t.resolved_at FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.tag = $2',
      values: [repository, tag],
    });
    const row = rows[0];
    return row ? { digest: row.digest, resolvedAt: row.resolved_at } : undefined;
  }

  async setTag(repository: string, tag: string, digest: string, now: number): Promise<void> {
    await this.#pool.query(
      `INSERT INTO tags (repository_id, tag, digest, resolved_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (repository_id, tag) DO UPDATE SET digest = EXCLUDED.digest, resolved_at = EXCLUDED.resolved_at`,
      [await this.#repo(this.#pool, repository), tag, digest, now],
    );
  }

  async recordAttestation(repository: string, a: AttestationRecord): Promise<void> {
    await this.#pool.query(
      `INSERT INTO attestations (repository_id, subject_digest, envelope_digest, envelope_size, policy_digest, signing_keys, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (repository_id, subject_digest, policy_digest, signing_keys) DO UPDATE SET
         envelope_digest = EXCLUDED.envelope_digest, envelope_size = EXCLUDED.envelope_size, created_at = EXCLUDED.created_at`,
      [
        await this.#repo(this.#pool, repository),
        a.subject,
        a.envelope,
        a.size,
        a.policyDigest,
        a.signingKeys,
        a.createdAt,
      ],
    );
  }

  async attestation(
    repository: string,
    subject: string,
    policyDigest: string,
    signingKeys: string,
  ): Promise<AttestationRecord | undefined> {
    const { rows } = await this.#pool.query<{
      envelope_digest: string;
      envelope_size: number;
      policy_digest: string;
      created_at: number;
    }>({
      name: 'attestation',
      text: `SELECT a.envelope_digest, a.envelope_size, a.policy_digest, a.created_at FROM attestations a
       JOIN repositories r ON r.id = a.repository_id
       WHERE r.name = $1 AND a.subject_digest = $2 AND a.policy_digest = $3 AND a.signing_keys = $4 LIMIT 1`,
      values: [repository, subject, policyDigest, signingKeys],
    });
    const row = rows[0];
    return row
      ? {
          subject,
          envelope: row.envelope_digest,
          size: row.envelope_size,
          policyDigest: row.policy_digest,
          signingKeys,
          createdAt: row.created_at,
        }
      : undefined;
  }

  async withdraw(repository: string, digest: string): Promise<void> {
    await this.#tx(async (c) => {
      const id = await this.#repo(c, repository);
      // Locked (with its children) before their attachments are looked up: an attachment being admitted for one
      // commits first and is found.
      await c.query({
        name: 'withdraw-lock',
        text: 'SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE',
        values: [id, digest],
      });
      // An index takes its platform manifests with it but those another admitted index lists, and every
      // manifest its attachments.
      const children = (
        await c.query<{ child_digest: string }>({
          name: 'withdraw-children',
          text: `SELECT c.child_digest FROM manifest_children c WHERE c.repository_id = $1 AND c.index_digest = $2
                   AND NOT EXISTS (SELECT 1 FROM manifest_children o JOIN manifests i
                                     ON i.repository_id = o.repository_id AND i.digest = o.index_digest AND i.kind = 'index'
                                   WHERE o.repository_id = c.repository_id AND o.child_digest = c.child_digest
                                     AND o.index_digest <> c.index_digest)`,
          values: [id, digest],
        })
      ).rows.map((r) => r.child_digest);
      const subjects = [digest, ...children];
      if (children.length > 0)
        await c.query({
          name: 'withdraw-lock-children',
          text: 'SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = ANY($2::text[]) FOR UPDATE',
          values: [id, children],
        });
      const attachments = (
        await c.query<{ digest: string }>({
          name: 'withdraw-attachments',
          text: "SELECT digest FROM manifests WHERE repository_id = $1 AND kind = 'attachment' AND subject = ANY($2::text[])",
          values: [id, subjects],
        })
      ).rows.map((r) => r.digest);
      const gone = [...subjects, ...attachments];
      await c.query({
        name: 'withdraw-manifests',
        text: 'DELETE FROM manifests WHERE repository_id = $1 AND digest = ANY($2::text[])',
        values: [id, gone],
      });
      await c.query({
        name: 'withdraw-blobs',
        text: 'DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = ANY($2::text[])',
        values: [id, gone],
      });
      await c.query({
        name: 'withdraw-index',
        text: 'DELETE FROM manifest_children WHERE repository_id = $1 AND index_digest = ANY($2::text[])',
        values: [id, subjects],
      });
      await c.query({
        name: 'withdraw-attestations',
        text: 'DELETE FROM attestations WHERE repository_id = $1 AND subject_digest = ANY($2::text[])',
        values: [id, subjects],
      });
    });
  }

  async firstAdmitted(repository: string, digest: string): Promise<number | undefined> {
    const { rows } = await this.#pool.query<{ t: number | null }>(
      'SELECT MIN(time) AS t FROM decisions WHERE digest = $1 AND repository = $2 AND allowed',
      [digest, repository],
    );
    return rows[0]?.t ?? undefined;
  }

  async recordDecision(r: DecisionRecord): Promise<void> {
    await this.#pool.query(
      `INSERT INTO decisions (time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        r.time,
        r.repository,
        r.digest,
        r.policyDigest,
        r.allowed,
        r.rule,
        JSON.stringify(r.reasons),
        r.mode ?? 'enforce',
        r.verdict ?? null,
        r.tag ?? null,
      ],
    );
  }

  async admittedFor(
    repository: string,
    digest: string,
    policyDigest: string,
    tag: string | undefined,
  ): Promise<boolean> {
    const { rowCount } = await this.#pool.query({
      name: 'admitted-for',
      text: `SELECT 1 FROM decisions WHERE digest = $1 AND repository = $2 AND policy_digest = $3 AND allowed
       AND tag IS NOT DISTINCT FROM $4::text LIMIT 1`,
      values: [digest, repository, policyDigest, tag ?? null],
    });
    return (rowCount ?? 0) > 0;
  }

  async pin(repository: string, tag: string): Promise<PinRecord | undefined> {
    const { rows } = await this.#pool.query<{
      tag: string;
      digest: string;
      pinned_at: number;
      upstream_digest: string | null;
    }>(
      `SELECT p.tag, p.digest, p.pinned_at, p.upstream_digest FROM pins p JOIN repositories r ON r.id = p.repository_id
       WHERE r.name = $1 AND p.tag = $2`,
      [repository, tag],
    );
    const row = rows[0];
    return row
      ? { tag: row.tag, digest: row.digest, pinnedAt: row.pinned_at, upstreamDigest: row.upstream_digest ?? undefined }
      : undefined;
  }

  async setPin(repository: string, tag: string, digest: string, now: number): Promise<void> {
    await this.#pool.query(
      'INSERT INTO pins (repository_id, tag, digest, pinned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [await this.#repo(this.#pool, repository), tag, digest, now],
    );
  }

  async notePinMove(repository: string, tag: string, upstreamDigest: string | undefined): Promise<void> {
    await this.#pool.query(
      'UPDATE pins SET upstream_digest = $1 WHERE tag = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $3)',
      [upstreamDigest ?? null, tag, repository],
    );
  }

  async releasePin(repository: string, tag: string): Promise<boolean> {
    return this.#tx(async (c) => {
      const released =
        ((
          await c.query(
            'DELETE FROM pins WHERE tag = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)',
            [tag, repository],
          )
        ).rowCount ?? 0) > 0;
      // The tag's cached resolution goes too: the next pull asks the upstream.
      if (released)
        await c.query(
          'DELETE FROM tags WHERE tag = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)',
          [tag, repository],
        );
      return released;
    });
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  async touch(repository: string, digest: string, now: number): Promise<void> {
    await this.#pool.query({
      name: 'touch',
      text: `UPDATE manifests SET last_pulled_at = GREATEST(last_pulled_at, $1)
       WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $3)`,
      values: [now, digest, repository],
    });
  }

  async storedBytes(repository: string, digest: string): Promise<{ digest: string; size: number }[]> {
    const { rows } = await this.#pool.query<{ digest: string; size: string }>(
      `WITH r AS (SELECT id FROM repositories WHERE name = $1),
            m(d) AS (SELECT $2::text UNION SELECT c.child_digest FROM manifest_children c, r
                     WHERE c.repository_id = r.id AND c.index_digest = $2)
       SELECT x.digest, MAX(x.size) AS size FROM (
         SELECT mf.digest, mf.size FROM manifests mf, r, m WHERE mf.repository_id = r.id AND mf.digest = m.d
         UNION ALL
         SELECT b.blob_digest, b.size FROM manifest_blobs b, r, m WHERE b.repository_id = r.id AND b.manifest_digest = m.d
       ) x GROUP BY x.digest ORDER BY x.digest COLLATE "C"`,
      [repository, digest],
    );
    return rows.map((r) => ({ digest: r.digest, size: Number(r.size) }));
  }

  async unreferenced(digests: readonly string[]): Promise<string[]> {
    if (digests.length > 1000) throw new RangeError('at most 1000 digests at a time');
    if (digests.length === 0) return [];
    const { rows } = await this.#pool.query<{ digest: string }>({
      name: 'unreferenced',
      text: `SELECT d AS digest FROM unnest($1::text[]) AS d
       WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob_digest = d)
         AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = d)
         AND NOT EXISTS (SELECT 1 FROM attestations WHERE envelope_digest = d)`,
      values: [digests],
    });
    return rows.map((r) => r.digest);
  }

  async blobReferenced(digest: string): Promise<boolean> {
    const { rows } = await this.#pool.query<{ used: boolean }>({
      name: 'blob-referenced',
      text: `SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob_digest = $1)
           OR EXISTS (SELECT 1 FROM manifests WHERE digest = $1)
           OR EXISTS (SELECT 1 FROM attestations WHERE envelope_digest = $1) AS used`,
      values: [digest],
    });
    return rows[0]?.used === true;
  }

  /**
   * Runs `f` holding the fleet's GC lock (a session advisory lock), or returns
   * undefined at once when another replica holds it.
   */
  async exclusively<T>(f: () => Promise<T>): Promise<T | undefined> {
    const c = await this.#pool.connect();
    try {
      const { rows } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [GC_LOCK]);
      if (rows[0]?.ok !== true) return undefined;
      try {
        return await f();
      } finally {
        await c.query('SELECT pg_advisory_unlock($1)', [GC_LOCK]);
      }
    } finally {
      c.release();
    }
  }

  async manifestPage(
    after: { repository: string; digest: string } | undefined,
    limit: number,
  ): Promise<ManifestPageRow[]> {
    // Byte order (COLLATE "C") on the indexes of migration 4, whatever the database's locale.
    return pageByRepository(
      after,
      limit,
      async (name, n) =>
        (name === undefined
          ? await this.#pool.query<{ name: string }>(
              'SELECT name FROM repositories ORDER BY name COLLATE "C" LIMIT $1',
              [n],
            )
          : await this.#pool.query<{ name: string }>(
              'SELECT name FROM repositories WHERE name COLLATE "C" > $1 ORDER BY name COLLATE "C" LIMIT $2',
              [name, n],
            )
        ).rows.map((r) => r.name),
      async (repository, digest, n) =>
        (digest === undefined
          ? await this.#pool.query<ManifestPageRow>(
              `SELECT r.name AS repository, m.digest, m.kind, m.size, m.admitted_at AS "admittedAt",
              m.last_pulled_at AS "lastPulledAt",
              EXISTS (SELECT 1 FROM manifest_children c JOIN manifests i
                        ON i.repository_id = c.repository_id AND i.digest = c.index_digest
                      WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest AND i.kind = 'index') AS "listedByIndex"
       FROM manifests m JOIN repositories r ON r.id = m.repository_id
       WHERE r.name = $1 ORDER BY m.digest COLLATE "C" LIMIT $2`,
              [repository, n],
            )
          : await this.#pool.query<ManifestPageRow>(
              `SELECT r.name AS repository, m.digest, m.kind, m.size, m.admitted_at AS "admittedAt",
              m.last_pulled_at AS "lastPulledAt",
              EXISTS (SELECT 1 FROM manifest_children c JOIN manifests i
                        ON i.repository_id = c.repository_id AND i.digest = c.index_digest
                      WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest AND i.kind = 'index') AS "listedByIndex"
       FROM manifests m JOIN repositories r ON r.id = m.repository_id
       WHERE r.name = $1 AND m.digest COLLATE "C" > $2 ORDER BY m.digest COLLATE "C" LIMIT $3`,
              [repository, digest, n],
            )
        ).rows.map((r) => ({ ...r })),
    );
  }

  async pins(repository?: string): Promise<(PinRecord & { repository: string })[]> {
    const { rows } = await this.#pool.query<{
      name: string;
      tag: string;
      digest: string;
      pinned_at: number;
      upstream_digest: string | null;
    }>(
      `SELECT r.name, p.tag, p.digest, p.pinned_at, p.upstream_digest FROM pins p JOIN repositories r ON r.id = p.repository_id
       WHERE $1::text IS NULL OR r.name = $1 ORDER BY r.name COLLATE "C", p.tag COLLATE "C"`,
      [repository ?? null],
    );
    return rows.map((r) => ({
      repository: r.name,
      tag: r.tag,
      digest: r.digest,
      pinnedAt: r.pinned_at,
      upstreamDigest: r.upstream_digest ?? undefined,
    }));
  }

  async decisions(filter: {
    digest?: string;
    repository?: string;
    tag?: string;
    limit: number;
  }): Promise<DecisionRecord[]> {
    const { rows } = await this.#pool.query<{
      time: number;
      repository: string;
      digest: string;
      policy_digest: string;
      allowed: boolean;
      rule: string;
      reasons: string;
      mode: string;
      verdict: boolean | null;
      tag: string | null;
    }>(
      `SELECT time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag FROM decisions
       WHERE ($1::text IS NULL OR digest = $1) AND ($2::text IS NULL OR repository = $2) AND ($3::text IS NULL OR tag = $3)
       ORDER BY id DESC LIMIT $4`,
      [filter.digest ?? null, filter.repository ?? null, filter.tag ?? null, Math.min(Math.max(filter.limit, 1), 1000)],
    );
    return rows.map((r) => ({
      time: r.time,
      repository: r.repository,
      digest: r.digest,
      policyDigest: r.policy_digest,
      allowed: r.allowed,
      rule: r.rule,
      reasons: JSON.parse(r.reasons) as DecisionRecord['reasons'],
      mode: r.mode as DecisionRecord['mode'],
      verdict: r.verdict ?? undefined,
      tag: r.tag ?? undefined,
    }));
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

async function checkSchema(pool: pg.Pool): Promise<void> {
  const exists = await pool.query<{ t: string | null }>(`SELECT to_regclass('portcullis_schema')::text AS t`);
  const version =
    exists.rows[0]?.t === null || exists.rows[0]?.t === undefined
      ? 0
      : ((await pool.query<{ version: number }>('SELECT version FROM portcullis_schema')).rows[0]?.version ?? 0);
  if (version > MIGRATIONS.length)
    throw new GatewayError(
      'STORE_SCHEMA_NEWER',
      `metadata database is at schema version ${version}, newer than this program (${MIGRATIONS.length})`,
    );
  if (version < MIGRATIONS.length)
    throw new GatewayError(
      'STORE_FAILED',
      `metadata database is at schema version ${version}, older than this program (${MIGRATIONS.length}): start a gateway of this version to migrate it`,
    );
}

async function migrate(pool: pg.Pool): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    // Replicas starting together: one migrates, the others wait here and then find nothing to do.
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS portcullis_schema (version INTEGER NOT NULL)');
    const { rows } = await c.query<{ version: number }>('SELECT version FROM portcullis_schema');
    const current = rows[0]?.version ?? 0;
    if (current > MIGRATIONS.length)
      throw new GatewayError(
        'STORE_SCHEMA_NEWER',
        `metadata database is at schema version ${current}, newer than this program (${MIGRATIONS.length})`,
      );
    for (let v = current; v < MIGRATIONS.length; v++) await c.query(MIGRATIONS[v] as string);
    if (rows.length > 0) await c.query('UPDATE portcullis_schema SET version = $1', [MIGRATIONS.length]);
    else await c.query('INSERT INTO portcullis_schema (version) VALUES ($1)', [MIGRATIONS.length]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}
