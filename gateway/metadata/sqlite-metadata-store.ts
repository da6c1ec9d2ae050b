import Database from 'better-sqlite3';
import { GatewayError } from '../errors.js';
import { pageByRepository, subjectGone } from './metadata-store.js';
import type {
  Admission,
  AdmittedManifest,
  AttestationRecord,
  DecisionRecord,
  ManifestKind,
  ManifestPageRow,
  MetadataStore,
  PinRecord,
  TagRecord,
} from './metadata-store.js';

/**
 * The embedded MetadataStore: one SQLite file in WAL mode. Migrations are numbered
 * and applied in order inside a transaction at open; a database newer than this
 * program is refused rather than guessed at.
 */
/** A manifestPage row as SQLite returns it (booleans are integers). */
type PageRow = Omit<ManifestPageRow, 'listedByIndex'> & { listedByIndex: number };

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE repositories (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
   CREATE TABLE manifests (
     repository_id INTEGER NOT NULL REFERENCES repositories(id),
     digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('image','index','attachment')),
     admitted_at INTEGER NOT NULL,
     PRIMARY KEY (repository_id, digest));
   CREATE TABLE manifest_blobs (
     repository_id INTEGER NOT NULL, manifest_digest TEXT NOT NULL, blob_digest TEXT NOT NULL, size INTEGER NOT NULL,
     PRIMARY KEY (repository_id, blob_digest, manifest_digest));
   CREATE TABLE manifest_children (
     repository_id INTEGER NOT NULL, index_digest TEXT NOT NULL, child_digest TEXT NOT NULL,
     PRIMARY KEY (repository_id, child_digest, index_digest));
   CREATE TABLE tags (
     repository_id INTEGER NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, resolved_at INTEGER NOT NULL,
     PRIMARY KEY (repository_id, tag));
   CREATE TABLE decisions (
     id INTEGER PRIMARY KEY, time INTEGER NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL,
     policy_digest TEXT NOT NULL, allowed INTEGER NOT NULL, rule TEXT NOT NULL, reasons TEXT NOT NULL);
   CREATE INDEX decisions_digest ON decisions (digest, time);
   CREATE INDEX decisions_repository ON decisions (repository, time);`,
  // Admissions remember the policy that made them: under another policy they are decided again.
  `ALTER TABLE manifests ADD COLUMN policy_digest TEXT NOT NULL DEFAULT '';`,
  `CREATE TABLE attestations (
     repository_id INTEGER NOT NULL REFERENCES repositories(id), subject_digest TEXT NOT NULL,
     envelope_digest TEXT NOT NULL, envelope_size INTEGER NOT NULL, policy_digest TEXT NOT NULL, created_at INTEGER NOT NULL,
     PRIMARY KEY (repository_id, subject_digest, policy_digest));`,
  // Rule modes, verdicts and tags in the decision log; tags pinned to their first verified digest.
  `ALTER TABLE decisions ADD COLUMN mode TEXT NOT NULL DEFAULT 'enforce';
   ALTER TABLE decisions ADD COLUMN verdict INTEGER;
   ALTER TABLE decisions ADD COLUMN tag TEXT;
   CREATE TABLE pins (
     repository_id INTEGER NOT NULL REFERENCES repositories(id), tag TEXT NOT NULL, digest TEXT NOT NULL,
     pinned_at INTEGER NOT NULL, upstream_digest TEXT, PRIMARY KEY (repository_id, tag));`,
  // Which rule admitted a manifest, and whether verified signatures did (only such an index covers its children).
  `ALTER TABLE manifests ADD COLUMN rule TEXT NOT NULL DEFAULT '';
   ALTER TABLE manifests ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;`,
  // The subject an attachment was stored for: it is served by digest only while that subject is admitted.
  `ALTER TABLE manifests ADD COLUMN subject TEXT;`,
  // Attestations per signing key set: after a key rotation none signed by the old set alone is served.
  // Rows from before carry no key set and so are never served again: they are re-signed on request.
  `CREATE TABLE attestations_by_key (
     repository_id INTEGER NOT NULL REFERENCES repositories(id), subject_digest TEXT NOT NULL,
     envelope_digest TEXT NOT NULL, envelope_size INTEGER NOT NULL, policy_digest TEXT NOT NULL,
     signing_keys TEXT NOT NULL, created_at INTEGER NOT NULL,
     PRIMARY KEY (repository_id, subject_digest, policy_digest, signing_keys));
   INSERT INTO attestations_by_key
     SELECT repository_id, subject_digest, envelope_digest, envelope_size, policy_digest, '', created_at FROM attestations;
   DROP TABLE attestations;
   ALTER TABLE attestations_by_key RENAME TO attestations;`,
  // Retention: when each manifest was last served, and what GC asks of a blob (is anything still using it).
  `ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER NOT NULL DEFAULT 0;
   UPDATE manifests SET last_pulled_at = admitted_at;
   CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);
   CREATE INDEX manifests_digest ON manifests (digest);
   CREATE INDEX attestations_envelope ON attestations (envelope_digest);`,
  // 9: what a withdrawal looks up by manifest (its links, an index's children, its attachments), as PostgreSQL
  // has had from the start: without these, withdrawing one admission scanned its repository's links.
  `CREATE INDEX manifest_blobs_manifest ON manifest_blobs (repository_id, manifest_digest);
   CREATE INDEX manifest_children_index ON manifest_children (repository_id, index_digest);
   CREATE INDEX manifests_subject ON manifests (repository_id, subject) WHERE kind = 'attachment';`,
];

export class SqliteMetadataStore implements MetadataStore {
  readonly #db: Database.Database;
  readonly #stmts;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
    migrate(this.#db);
    const db = this.#db;
    this.#stmts = {
      repoId: db.prepare<[string], { id: number }>('SELECT id FROM repositories WHERE name = ?'),
      insertRepo: db.prepare('INSERT OR IGNORE INTO repositories (name) VALUES (?)'),
      manifest: db.prepare<
        [string, string],
        {
          digest: string;
          media_type: string;
          size: number;
          kind: ManifestKind;
          policy_digest: string;
          rule: string;
          verified: number;
          subject: string | null;
        }
      >(
        `SELECT m.digest, m.media_type, m.size, m.kind, m.policy_digest, m.rule, m.verified, m.subject
         FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.digest = ?`,
      ),
      hasManifest: db.prepare<[number, string], { one: number }>(
        'SELECT 1 AS one FROM manifests WHERE repository_id = ? AND digest = ?',
      ),
      insertManifest: db.prepare(
        `INSERT OR REPLACE INTO manifests
         (repository_id, digest, media_type, size, kind, admitted_at, policy_digest, rule, verified, subject, last_pulled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      deleteBlobLinks: db.prepare('DELETE FROM manifest_blobs WHERE repository_id = ? AND manifest_digest = ?'),
      deleteChildren: db.prepare('DELETE FROM manifest_children WHERE repository_id = ? AND index_digest = ?'),
      insertBlob: db.prepare(
        'INSERT OR IGNORE INTO manifest_blobs (repository_id, manifest_digest, blob_digest, size) VALUES (?, ?, ?, ?)',
      ),
      insertChild: db.prepare(
        'INSERT OR IGNORE INTO manifest_children (repository_id, index_digest, child_digest) VALUES (?, ?, ?)',
      ),
      blobSize: db.prepare<[string, string, string], { size: number; kind: ManifestKind }>(
        `SELECT b.size, m.kind FROM manifest_blobs b JOIN repositories r ON r.id = b.repository_id
         JOIN manifests m ON m.repository_id = b.repository_id AND m.digest = b.manifest_digest
         WHERE r.name = ? AND b.blob_digest = ? AND m.policy_digest = ?
         ORDER BY m.kind = 'attachment', m.admitted_at LIMIT 1`,
      ),
      listed: db.prepare<[string, string, string, string], { index_digest: string }>(
        `SELECT c.index_digest FROM manifest_children c JOIN repositories r ON r.id = c.repository_id
         JOIN manifests m ON m.repository_id = c.repository_id AND m.digest = c.index_digest
         WHERE r.name = ? AND c.child_digest = ? AND m.kind = 'index' AND m.policy_digest = ? AND m.rule = ? AND m.verified = 1 LIMIT 1`,
      ),
      listedAnywhere: db.prepare<[string, string], { one: number }>(
        `SELECT 1 AS one FROM manifest_children c JOIN repositories r ON r.id = c.repository_id
         JOIN manifests m ON m.repository_id = c.repository_id AND m.digest = c.index_digest
         WHERE r.name = ? AND c.child_digest = ? AND m.kind = 'index' LIMIT 1`,
      ),
      firstRepositories: db.prepare<[number], { name: string }>('SELECT name FROM repositories ORDER BY name LIMIT ?'),
      repositoriesAfter: db.prepare<[string, number], { name: string }>(
        'SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?',
      ),
      pageFirst: db.prepare<[string, number], PageRow>(
        `SELECT r.name AS repository, m.digest, m.kind, m.size, m.admitted_at AS admittedAt,
                m.last_pulled_at AS lastPulledAt,
                EXISTS (SELECT 1 FROM manifest_children c JOIN manifests i
                          ON i.repository_id = c.repository_id AND i.digest = c.index_digest
                        WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest AND i.kind = 'index') AS listedByIndex
         FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = ? ORDER BY m.digest LIMIT ?`,
      ),
      pageAfter: db.prepare<[string, string, number], PageRow>(
        `SELECT r.name AS repository, m.digest, m.kind, m.size, m.admitted_at AS admittedAt,
                m.last_pulled_at AS lastPulledAt,
                EXISTS (SELECT 1 FROM manifest_children c JOIN manifests i
                          ON i.repository_id = c.repository_id AND i.digest = c.index_digest
                        WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest AND i.kind = 'index') AS listedByIndex
         FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = ? AND m.digest > ? ORDER BY m.digest LIMIT ?`,
      ),
      tag: db.prepare<[string, string], { digest: string; resolved_at: number }>(
        'SELECT t.digest, t.resolved_at FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = ? AND t.tag = ?',
      ),
      setTag: db.prepare('INSERT OR REPLACE INTO tags (repository_id, tag, digest, resolved_at) VALUES (?, ?, ?, ?)'),
      insertAttestation: db.prepare(
        'INSERT OR REPLACE INTO attestations (repository_id, subject_digest, envelope_digest, envelope_size, policy_digest, signing_keys, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      attestation: db.prepare<
        [string, string, string, string],
        { envelope_digest: string; envelope_size: number; policy_digest: string; created_at: number }
      >(
        `SELECT a.envelope_digest, a.envelope_size, a.policy_digest, a.created_at FROM attestations a JOIN repositories r ON r.id = a.repository_id
         WHERE r.name = ? AND a.subject_digest = ? AND a.policy_digest = ? AND a.signing_keys = ? LIMIT 1`,
      ),
      withdrawManifest: db.prepare('DELETE FROM manifests WHERE repository_id = ? AND digest = ?'),
      childrenOf: db.prepare<[number, string], { child_digest: string }>(
        `SELECT c.child_digest FROM manifest_children c WHERE c.repository_id = ? AND c.index_digest = ?
           AND NOT EXISTS (SELECT 1 FROM manifest_children o JOIN manifests i
                             ON i.repository_id = o.repository_id AND i.digest = o.index_digest AND i.kind = 'index'
                           WHERE o.repository_id = c.repository_id AND o.child_digest = c.child_digest
                             AND o.index_digest <> c.index_digest)`,
      ),
      attachmentsOf: db.prepare<[number, string], { digest: string }>(
        "SELECT digest FROM manifests WHERE repository_id = ? AND kind = 'attachment' AND subject = ?",
      ),
      firstAdmitted: db.prepare<[string, string], { t: number | null }>(
        'SELECT MIN(time) AS t FROM decisions WHERE digest = ? AND repository = ? AND allowed = 1',
      ),
      withdrawAttestations: db.prepare('DELETE FROM attestations WHERE repository_id = ? AND subject_digest = ?'),
      insertDecision: db.prepare(
        'INSERT INTO decisions (time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      admittedFor: db.prepare<[string, string, string, string | null, string | null], { one: number }>(
        'SELECT 1 AS one FROM decisions WHERE digest = ? AND repository = ? AND policy_digest = ? AND allowed = 1 AND (tag = ? OR (tag IS NULL AND ? IS NULL)) LIMIT 1',
      ),
      pin: db.prepare<
        [string, string],
        { tag: string; digest: string; pinned_at: number; upstream_digest: string | null }
      >(
        'SELECT p.tag, p.digest, p.pinned_at, p.upstream_digest FROM pins p JOIN repositories r ON r.id = p.repository_id WHERE r.name = ? AND p.tag = ?',
      ),
      insertPin: db.prepare('INSERT OR IGNORE INTO pins (repository_id, tag, digest, pinned_at) VALUES (?, ?, ?, ?)'),
      movePin: db.prepare(
        'UPDATE pins SET upstream_digest = ? WHERE tag = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)',
      ),
      releasePin: db.prepare(
        'DELETE FROM pins WHERE tag = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)',
      ),
    };
  }

  #repo(name: string): number {
    this.#stmts.insertRepo.run(name);
    const row = this.#stmts.repoId.get(name);
    if (!row) throw new Error(`repository ${name} vanished`);
    return row.id;
  }

  async admittedManifest(repository: string, digest: string): Promise<AdmittedManifest | undefined> {
    const row = this.#stmts.manifest.get(repository, digest);
    return row
      ? {
          digest: row.digest,
          mediaType: row.media_type,
          size: row.size,
          kind: row.kind,
          policyDigest: row.policy_digest,
          rule: row.rule,
          verified: row.verified === 1,
          ...(row.subject !== null ? { subject: row.subject } : {}),
        }
      : undefined;
  }

  async admit(repository: string, a: Admission, now: number): Promise<void> {
    this.#db.transaction(() => {
      const id = this.#repo(repository);
      // An attachment is kept only with its subject: one withdrawn since it was looked up takes it along now.
      if (a.kind === 'attachment' && a.subject !== undefined && !this.#stmts.hasManifest.get(id, a.subject))
        throw subjectGone(repository, a.subject);
      this.#stmts.insertManifest.run(
        id,
        a.digest,
        a.mediaType,
        a.size,
        a.kind,
        now,
        a.policyDigest,
        a.rule ?? '',
        a.verified ? 1 : 0,
        a.subject ?? null,
        now,
      );
      this.#stmts.deleteBlobLinks.run(id, a.digest);
      this.#stmts.deleteChildren.run(id, a.digest);
      for (const b of a.blobs) this.#stmts.insertBlob.run(id, a.digest, b.digest, b.size);
      for (const c of a.children) this.#stmts.insertChild.run(id, a.digest, c);
    })();
  }

  async admittedBlob(
    repository: string,
    digest: string,
    policyDigest: string,
  ): Promise<{ size: number; attachmentOnly: boolean } | undefined> {
    const row = this.#stmts.blobSize.get(repository, digest, policyDigest);
    return row ? { size: row.size, attachmentOnly: row.kind === 'attachment' } : undefined;
  }

  async listedByIndex(repository: string, digest: string): Promise<boolean> {
    return this.#stmts.listedAnywhere.get(repository, digest) !== undefined;
  }

  async coveringIndex(
    repository: string,
    digest: string,
    policyDigest: string,
    rule: string,
  ): Promise<string | undefined> {
    return this.#stmts.listed.get(repository, digest, policyDigest, rule)?.index_digest;
  }

  async tag(repository: string, tag: string): Promise<TagRecord | undefined> {
    const row = this.#stmts.tag.get(repository, tag);
    return row ? { digest: row.digest, resolvedAt: row.resolved_at } : undefined;
  }

  async setTag(repository: string, tag: string, digest: string, now: number): Promise<void> {
    this.#stmts.setTag.run(this.#repo(repository), tag, digest, now);
  }

  async recordAttestation(repository: string, a: AttestationRecord): Promise<void> {
    this.#stmts.insertAttestation.run(
      this.#repo(repository),
      a.subject,
      a.envelope,
      a.size,
      a.policyDigest,
      a.signingKeys,
      a.createdAt,
    );
  }

  async attestation(
    repository: string,
    subject: string,
    policyDigest: string,
    signingKeys: string,
  ): Promise<AttestationRecord | undefined> {
    const row = this.#stmts.attestation.get(repository, subject, policyDigest, signingKeys);
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
    this.#db.transaction(() => {
      const id = this.#repo(repository);
      // An index takes its platform manifests with it (they may have rested on it; they
      // are decided afresh when next asked for) but those another admitted index lists,
      // and every manifest its attachments.
      const children = this.#stmts.childrenOf.all(id, digest).map((r) => r.child_digest);
      for (const d of [digest, ...children]) {
        for (const a of this.#stmts.attachmentsOf.all(id, d)) {
          this.#stmts.withdrawManifest.run(id, a.digest);
          this.#stmts.deleteBlobLinks.run(id, a.digest);
        }
        this.#stmts.withdrawManifest.run(id, d);
        this.#stmts.deleteBlobLinks.run(id, d);
        this.#stmts.deleteChildren.run(id, d);
        this.#stmts.withdrawAttestations.run(id, d);
      }
    })();
  }

  async firstAdmitted(repository: string, digest: string): Promise<number | undefined> {
    return this.#stmts.firstAdmitted.get(digest, repository)?.t ?? undefined;
  }

  async recordDecision(r: DecisionRecord): Promise<void> {
    this.#stmts.insertDecision.run(
      r.time,
      r.repository,
      r.digest,
      r.policyDigest,
      r.allowed ? 1 : 0,
      r.rule,
      JSON.stringify(r.reasons),
      r.mode ?? 'enforce',
      r.verdict === undefined ? null : r.verdict ? 1 : 0,
      r.tag ?? null,
    );
  }

  async admittedFor(
    repository: string,
    digest: string,
    policyDigest: string,
    tag: string | undefined,
  ): Promise<boolean> {
    return this.#stmts.admittedFor.get(digest, repository, policyDigest, tag ?? null, tag ?? null) !== undefined;
  }

  async pin(repository: string, tag: string): Promise<PinRecord | undefined> {
    const row = this.#stmts.pin.get(repository, tag);
    return row
      ? { tag: row.tag, digest: row.digest, pinnedAt: row.pinned_at, upstreamDigest: row.upstream_digest ?? undefined }
      : undefined;
  }

  async setPin(repository: string, tag: string, digest: string, now: number): Promise<void> {
    this.#stmts.insertPin.run(this.#repo(repository), tag, digest, now);
  }

  async notePinMove(repository: string, tag: string, upstreamDigest: string | undefined): Promise<void> {
    this.#stmts.movePin.run(upstreamDigest ?? null, tag, repository);
  }

  async releasePin(repository: string, tag: string): Promise<boolean> {
    return this.#db.transaction(() => {
      const released = this.#stmts.releasePin.run(tag, repository).changes > 0;
      // The tag's cached resolution goes too: the next pull asks the upstream.
      if (released)
        this.#db
          .prepare('DELETE FROM tags WHERE tag = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)')
          .run(tag, repository);
      return released;
    })();
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async touch(repository: string, digest: string, now: number): Promise<void> {
    this.#db
      .prepare(
        'UPDATE manifests SET last_pulled_at = ? WHERE digest = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)',
      )
      .run(now, digest, repository);
  }

  async storedBytes(repository: string, digest: string): Promise<{ digest: string; size: number }[]> {
    return this.#db
      .prepare(
        `WITH r AS (SELECT id FROM repositories WHERE name = ?),
              m(d) AS (SELECT ? UNION SELECT c.child_digest FROM manifest_children c, r
                       WHERE c.repository_id = r.id AND c.index_digest = ?)
         SELECT x.digest AS digest, MAX(x.size) AS size FROM (
           SELECT mf.digest AS digest, mf.size AS size FROM manifests mf, r, m WHERE mf.repository_id = r.id AND mf.digest = m.d
           UNION ALL
           SELECT b.blob_digest, b.size FROM manifest_blobs b, r, m WHERE b.repository_id = r.id AND b.manifest_digest = m.d
         ) x GROUP BY x.digest ORDER BY x.digest`,
      )
      .all(repository, digest, digest) as { digest: string; size: number }[];
  }

  async unreferenced(digests: readonly string[]): Promise<string[]> {
    if (digests.length > 1000) throw new RangeError('at most 1000 digests at a time');
    if (digests.length === 0) return [];
    const list = JSON.stringify(digests);
    const rows = this.#db
      .prepare(
        `SELECT d.value AS digest FROM json_each(?) d
         WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob_digest = d.value)
           AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = d.value)
           AND NOT EXISTS (SELECT 1 FROM attestations WHERE envelope_digest = d.value)`,
      )
      .all(list) as { digest: string }[];
    return rows.map((r) => r.digest);
  }

  async blobReferenced(digest: string): Promise<boolean> {
    const row = this.#db
      .prepare(
        `SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob_digest = ?)
             OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?)
             OR EXISTS (SELECT 1 FROM attestations WHERE envelope_digest = ?) AS used`,
      )
      .get(digest, digest, digest) as { used: number };
    return row.used === 1;
  }

  async manifestPage(
    after: { repository: string; digest: string } | undefined,
    limit: number,
  ): Promise<ManifestPageRow[]> {
    return pageByRepository(
      after,
      limit,
      async (name, n) =>
        (name === undefined ? this.#stmts.firstRepositories.all(n) : this.#stmts.repositoriesAfter.all(name, n)).map(
          (r) => r.name,
        ),
      async (repository, digest, n) =>
        (digest === undefined
          ? this.#stmts.pageFirst.all(repository, n)
          : this.#stmts.pageAfter.all(repository, digest, n)
        ).map((r) => ({ ...r, listedByIndex: r.listedByIndex === 1 })),
    );
  }

  async pins(repository?: string): Promise<(PinRecord & { repository: string })[]> {
    const rows = this.#db
      .prepare(
        `SELECT r.name, p.tag, p.digest, p.pinned_at, p.upstream_digest FROM pins p JOIN repositories r ON r.id = p.repository_id ${repository === undefined ? '' : 'WHERE r.name = ?'} ORDER BY r.name, p.tag`,
      )
      .all(...(repository === undefined ? [] : [repository])) as {
      name: string;
      tag: string;
      digest: string;
      pinned_at: number;
      upstream_digest: string | null;
    }[];
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
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.digest !== undefined) {
      where.push('digest = ?');
      args.push(filter.digest);
    }
    if (filter.repository !== undefined) {
      where.push('repository = ?');
      args.push(filter.repository);
    }
    if (filter.tag !== undefined) {
      where.push('tag = ?');
      args.push(filter.tag);
    }
    const sql = `SELECT time, repository, digest, policy_digest, allowed, rule, reasons, mode, verdict, tag FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    const rows = this.#db.prepare(sql).all(...args, Math.min(Math.max(filter.limit, 1), 1000)) as {
      time: number;
      repository: string;
      digest: string;
      policy_digest: string;
      allowed: number;
      rule: string;
      reasons: string;
      mode: string;
      verdict: number | null;
      tag: string | null;
    }[];
    return rows.map((r) => ({
      time: r.time,
      repository: r.repository,
      digest: r.digest,
      policyDigest: r.policy_digest,
      allowed: r.allowed === 1,
      rule: r.rule,
      reasons: JSON.parse(r.reasons) as DecisionRecord['reasons'],
      mode: r.mode as DecisionRecord['mode'],
      verdict: r.verdict === null ? undefined : r.verdict === 1,
      tag: r.tag ?? undefined,
    }));
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare<[], { version: number }>('SELECT version FROM schema_version').get();
  const current = row?.version ?? 0;
  if (current > MIGRATIONS.length) {
    throw new GatewayError(
      'STORE_SCHEMA_NEWER',
      `metadata database is at schema version ${current}, newer than this program (${MIGRATIONS.length})`,
    );
  }
  db.transaction(() => {
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] as string);
    if (row) db.prepare('UPDATE schema_version SET version = ?').run(MIGRATIONS.length);
    else db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(MIGRATIONS.length);
  })();
}
