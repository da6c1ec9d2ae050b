import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { PostgresMetadataStore } from '../../gateway/metadata/postgres-metadata-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { metadataStoreContract } from './metadata-store.contract.js';

/**
 * The PostgreSQL MetadataStore on a real PostgreSQL server (Debian's, run as an
 * unprivileged user by the test): the contract every store passes, then what only a
 * shared database has — replicas migrating at once, one replica's admission seen by
 * another, a database newer than the program refused.
 */
let server: TestPostgres;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const openOn = (database: string, password = server.password) =>
  PostgresMetadataStore.open({
    host: server.host,
    port: server.port,
    database,
    user: server.user,
    password,
  });

metadataStoreContract('PostgresMetadataStore', async () => {
  const db = await server.createDatabase();
  const store = await openOn(db.name);
  return { store, cleanup: () => store.close() };
});

const D = (c: string) => `sha256:${c.repeat(64)}`;

test('PostgresMetadataStore: eight replicas opening a new database at once migrate it once', async () => {
  const db = await server.createDatabase();
  const stores = await Promise.all(Array.from({ length: 8 }, () => openOn(db.name)));
  try {
    const c = new pg.Client({
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database: db.name,
    });
    await c.connect();
    try {
      const { rows } = await c.query<{ version: number }>('SELECT version FROM portcullis_schema');
      assert.deepEqual(rows, [{ version: 4 }]);
    } finally {
      await c.end();
    }
    // And each works.
    await Promise.all(stores.map((s, i) => s.setTag('reg/a', `t${i}`, D('1'), i)));
    assert.equal((await stores[0]?.tag('reg/a', 't7'))?.resolvedAt, 7);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('PostgresMetadataStore: what one replica admits, another serves; a withdrawal is seen by both', async () => {
  const db = await server.createDatabase();
  const [a, b] = await Promise.all([openOn(db.name), openOn(db.name)]);
  try {
    const P = D('p');
    // Both replicas admit concurrently into a repository neither has seen.
    await Promise.all(
      [a, b].map((s, i) =>
        s.admit(
          'reg/new',
          {
            digest: D(String(i + 1)),
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            size: 10,
            kind: 'image',
            blobs: [{ digest: D('b'), size: 5 }],
            children: [],
            policyDigest: P,
          },
          1,
        ),
      ),
    );
    assert.equal((await b.admittedManifest('reg/new', D('1')))?.size, 10);
    assert.equal((await a.admittedManifest('reg/new', D('2')))?.size, 10);
    assert.deepEqual(await b.admittedBlob('reg/new', D('b'), P), { size: 5, attachmentOnly: false });
    await a.withdraw('reg/new', D('1'));
    assert.equal(await b.admittedManifest('reg/new', D('1')), undefined);
    assert.ok(await b.admittedBlob('reg/new', D('b'), P), 'the other manifest still references the blob');
  } finally {
    await a.close();
    await b.close();
  }
});

test('PostgresMetadataStore: a database at a newer schema version, or a wrong password, is refused at open', async () => {
  const db = await server.createDatabase();
  (await openOn(db.name)).close();
  const c = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: db.name,
  });
  await c.connect();
  await c.query('UPDATE portcullis_schema SET version = 99');
  await c.end();
  await assert.rejects(openOn(db.name), (err: Error & { code?: string }) => err.code === 'STORE_SCHEMA_NEWER');
  await assert.rejects(openOn(db.name, 'not the password'), (err: Error & { code?: string }) => err.code === '28P01');
});

test('PostgresMetadataStore: a read-only tool never migrates: a new database is refused, a current one opens', async () => {
  const db = await server.createDatabase();
  const readOnly = () =>
    PostgresMetadataStore.open({
      host: server.host,
      port: server.port,
      database: db.name,
      user: server.user,
      password: server.password,
      migrate: false,
    });
  await assert.rejects(readOnly(), (err: Error & { code?: string }) => err.code === 'STORE_FAILED');
  await (await openOn(db.name)).close();
  await (await readOnly()).close();
});

test('PostgresMetadataStore: fill leases: one holder at a time, renewed by it, free again on release or when they lapse', async () => {
  const db = await server.createDatabase();
  const [a, b] = await Promise.all([openOn(db.name), openOn(db.name)]);
  try {
    const la = a.leases;
    const lb = b.leases;
    assert.equal(await la.acquire('up/app@x', 'A', 60_000), true);
    assert.equal(await lb.acquire('up/app@x', 'B', 60_000), false, 'held by A');
    assert.equal(await la.acquire('up/app@x', 'A', 60_000), true, 'A again: still its own');
    assert.equal(await lb.renew('up/app@x', 'B', 60_000), false, 'B cannot renew what it does not hold');
    assert.equal(await la.renew('up/app@x', 'A', 60_000), true);
    await lb.release('up/app@x', 'B'); // not B's: nothing happens
    assert.equal(await lb.acquire('up/app@x', 'B', 60_000), false);
    await la.release('up/app@x', 'A');
    assert.equal(await lb.acquire('up/app@x', 'B', 1), true, 'free after release');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await la.acquire('up/app@x', 'A', 60_000), true, 'B let it lapse');
    assert.equal(await lb.renew('up/app@x', 'B', 60_000), false, 'B lost it');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('PostgresMetadataStore: a withdrawal waits for an attachment being admitted for its subject, then takes it along', async () => {
  const db = await server.createDatabase();
  const store = await openOn(db.name);
  const c = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: db.name,
  });
  await c.connect();
  try {
    const P = D('p');
    const manifest = (digest: string, extra: Record<string, unknown> = {}) => ({
      digest,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 20,
      kind: 'image' as const,
      blobs: [],
      children: [],
      policyDigest: P,
      rule: 'reg',
      verified: true,
      ...extra,
    });
    await store.admit('reg/a', manifest(D('1')), 1);
    // Another replica's admission of an attachment, midway: it holds the subject as admit does.
    await c.query('BEGIN');
    await c.query(
      "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = 'reg/a' AND m.digest = $1 FOR SHARE",
      [D('1')],
    );
    const withdrawn = store.withdraw('reg/a', D('1'));
    // The withdrawal is waiting for that lock before it looks for attachments.
    for (let i = 0; ; i++) {
      const { rows } = await c.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        [db.name],
      );
      if (Number(rows[0]?.n) > 0) break;
      if (i > 200) assert.fail('the withdrawal never waited for the admission in progress');
      await new Promise((r) => setTimeout(r, 10));
    }
    await c.query(
      `INSERT INTO manifests (repository_id, digest, media_type, size, kind, admitted_at, policy_digest, rule, verified, subject, last_pulled_at)
       SELECT id, $1, 'application/vnd.oci.image.manifest.v1+json', 20, 'attachment', 2, $2, 'attachment', false, $3, 2
       FROM repositories WHERE name = 'reg/a'`,
      [D('2'), P, D('1')],
    );
    await c.query('COMMIT');
    await withdrawn;
    assert.equal(await store.admittedManifest('reg/a', D('1')), undefined);
    assert.equal(await store.admittedManifest('reg/a', D('2')), undefined, 'the attachment went with its subject');
  } finally {
    await c.end();
    await store.close();
  }
});

test('PostgresMetadataStore: a database restored under a running gateway, with other repository ids, gets rows under the right names', async () => {
  const db = await server.createDatabase();
  const store = await openOn(db.name);
  const c = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: db.name,
  });
  await c.connect();
  try {
    await store.setTag('reg/a', 'v1', D('1'), 1);
    const { rows } = await c.query<{ id: string }>("SELECT id FROM repositories WHERE name = 'reg/a'");
    const old = Number(rows[0]?.id);
    // The restore: reg/a's old id now names reg/b, and reg/a has another.
    await c.query('TRUNCATE repositories, manifests, manifest_blobs, manifest_children, tags, attestations, pins');
    await c.query("INSERT INTO repositories (id, name) OVERRIDING SYSTEM VALUE VALUES ($1, 'reg/b'), ($2, 'reg/a')", [
      old,
      old + 100,
    ]);
    await store.setTag('reg/a', 'v2', D('2'), 2);
    await store.admit(
      'reg/a',
      {
        digest: D('3'),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 20,
        kind: 'image',
        blobs: [],
        children: [],
        policyDigest: D('p'),
        rule: 'reg',
        verified: true,
      },
      2,
    );
    assert.equal((await store.tag('reg/a', 'v2'))?.digest, D('2'));
    assert.ok(await store.admittedManifest('reg/a', D('3')));
    assert.equal(await store.tag('reg/b', 'v2'), undefined);
    assert.equal(await store.admittedManifest('reg/b', D('3')), undefined);
  } finally {
    await c.end();
    await store.close();
  }
});
