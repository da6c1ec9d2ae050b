import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MetadataStore } from '../../gateway/metadata/metadata-store.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

/** What every MetadataStore must do. `open` gives a fresh, empty store. */
export function metadataStoreContract(
  name: string,
  open: () => Promise<{ store: MetadataStore; cleanup: () => Promise<void> }>,
): void {
  test(`${name}: admissions link blobs and children per repository`, async () => {
    const { store, cleanup } = await open();
    try {
      const P = D('p');
      await store.admit(
        'reg/a',
        {
          digest: D('1'),
          mediaType: 'application/vnd.oci.image.index.v1+json',
          size: 10,
          kind: 'index',
          blobs: [],
          children: [D('2')],
          policyDigest: P,
          rule: 'reg',
          verified: true,
        },
        1,
      );
      await store.admit(
        'reg/a',
        {
          digest: D('2'),
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 20,
          kind: 'image',
          blobs: [{ digest: D('3'), size: 30 }],
          children: [],
          policyDigest: P,
          rule: 'reg',
          verified: false,
        },
        2,
      );
      await store.admit(
        'reg/a',
        {
          digest: D('5'),
          mediaType: 'application/vnd.oci.image.index.v1+json',
          size: 10,
          kind: 'index',
          blobs: [],
          children: [D('6')],
          policyDigest: P,
          rule: 'reg',
          verified: false,
        },
        1,
      );
      await store.admit(
        'reg/a',
        {
          digest: D('4'),
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 20,
          kind: 'attachment',
          blobs: [{ digest: D('3'), size: 1 }],
          children: [],
          policyDigest: P,
        },
        0,
      );
      assert.deepEqual(await store.admittedManifest('reg/a', D('2')), {
        digest: D('2'),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 20,
        kind: 'image',
        policyDigest: P,
        rule: 'reg',
        verified: false,
      });
      assert.equal(await store.admittedManifest('reg/b', D('2')), undefined);
      assert.deepEqual(
        await store.admittedBlob('reg/a', D('3'), P),
        { size: 30, attachmentOnly: false },
        'an image link wins over an attachment link',
      );
      assert.equal(await store.admittedBlob('reg/b', D('3'), P), undefined);
      assert.equal(
        await store.admittedBlob('reg/a', D('3'), D('q')),
        undefined,
        'admissions under another policy do not count',
      );
      assert.equal(await store.coveringIndex('reg/a', D('2'), P, 'reg'), D('1'));
      assert.equal(await store.coveringIndex('reg/a', D('2'), D('q'), 'reg'), undefined);
      assert.equal(await store.coveringIndex('reg/b', D('2'), P, 'reg'), undefined);
      assert.equal(
        await store.coveringIndex('reg/a', D('2'), P, 'reg/a'),
        undefined,
        'only an index admitted under the same rule covers',
      );
      assert.equal(
        await store.coveringIndex('reg/a', D('6'), P, 'reg'),
        undefined,
        'only a verified index covers (not one admitted in warn or audit mode)',
      );
      await store.admit(
        'reg/a',
        {
          digest: D('8'),
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 20,
          kind: 'attachment',
          subject: D('2'),
          blobs: [{ digest: D('9'), size: 9 }],
          children: [],
          policyDigest: P,
        },
        3,
      );
      assert.equal((await store.admittedManifest('reg/a', D('8')))?.subject, D('2'), 'an attachment keeps its subject');
      assert.deepEqual(await store.admittedBlob('reg/a', D('9'), P), { size: 9, attachmentOnly: true });
      assert.equal(await store.listedByIndex('reg/a', D('6')), true, 'listed by an index, verified or not');
      assert.equal(await store.listedByIndex('reg/a', D('2')), true);
      assert.equal(await store.listedByIndex('reg/a', D('8')), false);
      assert.equal(await store.listedByIndex('reg/b', D('6')), false);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: tags move and decisions are kept newest first`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.setTag('reg/a', 'v1', D('1'), 100);
      await store.setTag('reg/a', 'v1', D('2'), 200);
      assert.deepEqual(await store.tag('reg/a', 'v1'), { digest: D('2'), resolvedAt: 200 });
      assert.equal(await store.tag('reg/a', 'v2'), undefined);
      for (const [i, allowed] of [
        [1, false],
        [2, true],
      ] as const) {
        await store.recordDecision({
          time: i,
          repository: 'reg/a',
          digest: D('1'),
          policyDigest: D('9'),
          allowed,
          rule: 'reg',
          reasons: [{ code: allowed ? 'signature.verified' : 'signature.missing', message: 'm' }],
        });
      }
      const ds = await store.decisions({ digest: D('1'), limit: 10 });
      assert.deepEqual(
        ds.map((d) => d.allowed),
        [true, false],
      );
      assert.equal(ds[1]?.reasons[0]?.code, 'signature.missing');
      // Admissions per tag asked for (undefined: by digest).
      await store.recordDecision({
        time: 3,
        repository: 'reg/a',
        digest: D('1'),
        policyDigest: D('9'),
        allowed: true,
        rule: 'reg',
        reasons: [],
        tag: 'v1',
      });
      assert.equal(await store.admittedFor('reg/a', D('1'), D('9'), 'v1'), true);
      assert.equal(await store.admittedFor('reg/a', D('1'), D('9'), 'v2'), false);
      assert.equal(
        await store.admittedFor('reg/a', D('1'), D('9'), undefined),
        true,
        'the allowed decision of test 2 named no tag',
      );
      assert.equal(await store.admittedFor('reg/a', D('1'), D('8'), 'v1'), false, 'another policy');
    } finally {
      await cleanup();
    }
  });

  test(`${name}: attestations are kept per policy and signing key set; a withdrawn admission is forgotten`, async () => {
    const { store, cleanup } = await open();
    try {
      const P = D('p');
      const att = (envelope: string, signingKeys: string, createdAt: number) => ({
        subject: D('2'),
        envelope,
        size: 5,
        policyDigest: P,
        signingKeys,
        createdAt,
      });
      await store.recordAttestation('reg/a', att(D('a'), 'old', 1));
      await store.recordAttestation('reg/a', att(D('b'), 'new,old', 2));
      assert.equal((await store.attestation('reg/a', D('2'), P, 'old'))?.envelope, D('a'));
      assert.equal((await store.attestation('reg/a', D('2'), P, 'new,old'))?.envelope, D('b'));
      assert.equal(await store.attestation('reg/a', D('2'), P, 'new'), undefined, 'another key set');
      assert.equal(await store.attestation('reg/a', D('2'), D('q'), 'old'), undefined, 'another policy');
      await store.recordAttestation('reg/a', att(D('c'), 'old', 3));
      assert.deepEqual(await store.attestation('reg/a', D('2'), P, 'old'), att(D('c'), 'old', 3), 'renewed in place');
      await store.admit(
        'reg/a',
        {
          digest: D('2'),
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 20,
          kind: 'image',
          blobs: [{ digest: D('3'), size: 30 }],
          children: [],
          policyDigest: P,
          rule: 'reg',
          verified: true,
        },
        2,
      );
      await store.withdraw('reg/a', D('2'));
      assert.equal(await store.admittedManifest('reg/a', D('2')), undefined);
      assert.equal(await store.admittedBlob('reg/a', D('3'), P), undefined);
      assert.equal(await store.attestation('reg/a', D('2'), P, 'old'), undefined);
      await store.withdraw('reg/b', D('9'));
      // An index takes the platform manifests it lists, and every manifest its attachments.
      const image = (digest: string, extra: Record<string, unknown> = {}) => ({
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
      await store.admit('reg/a', { ...image(D('4')), kind: 'index', children: [D('5')] }, 3);
      await store.admit('reg/a', image(D('5')), 3);
      await store.admit('reg/a', image(D('6'), { kind: 'attachment', subject: D('5') }), 3);
      await store.admit('reg/a', image(D('7')), 3);
      await store.withdraw('reg/a', D('4'));
      for (const d of ['4', '5', '6']) assert.equal(await store.admittedManifest('reg/a', D(d)), undefined, d);
      assert.ok(await store.admittedManifest('reg/a', D('7')), 'an unrelated image stays');
      // A platform manifest two admitted indexes list stays (with its layers) until the last of them goes.
      await store.admit('reg/a', { ...image(D('a')), kind: 'index', children: [D('c')] }, 3);
      await store.admit('reg/a', { ...image(D('b')), kind: 'index', children: [D('c')] }, 3);
      await store.admit('reg/a', image(D('c'), { blobs: [{ digest: D('d'), size: 4 }] }), 3);
      await store.withdraw('reg/a', D('a'));
      assert.ok(await store.admittedManifest('reg/a', D('c')), 'still listed by the other index');
      assert.equal(await store.blobReferenced(D('d')), true);
      assert.equal(await store.listedByIndex('reg/a', D('c')), true);
      await store.withdraw('reg/a', D('b'));
      assert.equal(await store.admittedManifest('reg/a', D('c')), undefined);
      assert.equal(await store.blobReferenced(D('d')), false);
      // An attachment whose subject was withdrawn after it was looked up is refused, and nothing of it is kept.
      await assert.rejects(
        store.admit(
          'reg/a',
          image(D('8'), { kind: 'attachment', subject: D('5'), blobs: [{ digest: D('3'), size: 1 }] }),
          4,
        ),
        (err: unknown) => (err as { code?: string }).code === 'MANIFEST_UNKNOWN',
      );
      assert.equal(await store.admittedManifest('reg/a', D('8')), undefined);
      assert.equal(await store.blobReferenced(D('3')), false);
      // The first admission is remembered across re-decisions and withdrawals.
      for (const [time, allowed] of [
        [10, false],
        [20, true],
        [30, true],
      ] as const)
        await store.recordDecision({
          time,
          repository: 'reg/a',
          digest: D('5'),
          policyDigest: P,
          allowed,
          rule: 'reg',
          reasons: [],
        });
      assert.equal(await store.firstAdmitted('reg/a', D('5')), 20);
      assert.equal(await store.firstAdmitted('reg/a', D('8')), undefined);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: a pin keeps its first digest until released, and releasing it forgets the tag`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.setPin('reg/a', 'v1', D('1'), 10);
      await store.setPin('reg/a', 'v1', D('2'), 20);
      assert.deepEqual(await store.pin('reg/a', 'v1'), {
        tag: 'v1',
        digest: D('1'),
        pinnedAt: 10,
        upstreamDigest: undefined,
      });
      await store.notePinMove('reg/a', 'v1', D('3'));
      assert.equal((await store.pin('reg/a', 'v1'))?.upstreamDigest, D('3'));
      await store.notePinMove('reg/a', 'v1', undefined);
      assert.equal((await store.pin('reg/a', 'v1'))?.upstreamDigest, undefined);
      await store.setPin('reg/b', 'v1', D('4'), 30);
      assert.deepEqual(
        (await store.pins()).map((p) => [p.repository, p.tag, p.digest]),
        [
          ['reg/a', 'v1', D('1')],
          ['reg/b', 'v1', D('4')],
        ],
      );
      assert.deepEqual(
        (await store.pins('reg/b')).map((p) => p.digest),
        [D('4')],
      );
      await store.setTag('reg/a', 'v1', D('1'), 10);
      assert.equal(await store.releasePin('reg/a', 'v1'), true);
      assert.equal(await store.releasePin('reg/a', 'v1'), false);
      assert.equal(await store.pin('reg/a', 'v1'), undefined);
      assert.equal(await store.tag('reg/a', 'v1'), undefined, 'the next pull asks the upstream');
    } finally {
      await cleanup();
    }
  });

  test(`${name}: decisions filter by repository and tag and keep mode and verdict`, async () => {
    const { store, cleanup } = await open();
    try {
      const base = { digest: D('1'), policyDigest: D('9'), rule: 'reg', reasons: [] };
      await store.recordDecision({ ...base, time: 1, repository: 'reg/a', allowed: true, tag: 'v1' });
      await store.recordDecision({
        ...base,
        time: 2,
        repository: 'reg/b',
        allowed: true,
        mode: 'audit',
        verdict: false,
      });
      await store.recordDecision({ ...base, time: 3, repository: 'reg/a', allowed: false, tag: 'v2' });
      assert.deepEqual(
        (await store.decisions({ repository: 'reg/a', limit: 10 })).map((d) => d.time),
        [3, 1],
      );
      assert.deepEqual(
        (await store.decisions({ repository: 'reg/a', tag: 'v1', limit: 10 })).map((d) => d.time),
        [1],
      );
      const audit = (await store.decisions({ repository: 'reg/b', limit: 10 }))[0];
      assert.equal(audit?.mode, 'audit');
      assert.equal(audit?.verdict, false);
      assert.equal(audit?.tag, undefined);
      assert.deepEqual(
        (await store.decisions({ limit: 2 })).map((d) => d.time),
        [3, 2],
      );
    } finally {
      await cleanup();
    }
  });

  test(`${name}: manifestPage walks every admission in (repository, digest) order, a page at a time`, async () => {
    const { store, cleanup } = await open();
    try {
      const admitted: string[] = [];
      for (const [repo, c] of [
        ['reg/b', '2'],
        ['reg/a', '3'],
        ['reg/B', '1'],
        ['reg/a', '1'],
        ['reg/b', '1'],
      ] as const) {
        await store.admit(
          repo,
          {
            digest: D(c),
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            size: 7,
            kind: 'image',
            blobs: [],
            children: [],
            policyDigest: D('p'),
            rule: 'reg',
            verified: true,
          },
          1,
        );
        admitted.push(`${repo} ${D(c)}`);
      }
      // An index listing reg/a's D(1); and more repositories without manifests than a page step asks for.
      await store.admit(
        'reg/a',
        {
          digest: D('9'),
          mediaType: 'application/vnd.oci.image.index.v1+json',
          size: 7,
          kind: 'index',
          blobs: [],
          children: [D('1')],
          policyDigest: D('p'),
          rule: 'reg',
          verified: true,
        },
        1,
      );
      admitted.push(`reg/a ${D('9')}`);
      for (let i = 0; i < 70; i++) {
        const empty = `reg/a${String(i).padStart(2, '0')}`;
        await store.admit(
          empty,
          {
            digest: D('5'),
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            size: 7,
            kind: 'image',
            blobs: [],
            children: [],
            policyDigest: D('p'),
            rule: 'reg',
            verified: true,
          },
          1,
        );
        await store.withdraw(empty, D('5'));
      }
      const listed: string[] = [];
      const seen: string[] = [];
      let after: { repository: string; digest: string } | undefined;
      for (let page = 0; page < 10; page++) {
        const rows = await store.manifestPage(after, 2);
        if (rows.length === 0) break;
        assert.ok(rows.length <= 2);
        for (const r of rows) {
          assert.equal(r.kind, r.digest === D('9') ? 'index' : 'image');
          assert.equal(r.size, 7);
          seen.push(`${r.repository} ${r.digest}`);
          if (r.listedByIndex) listed.push(`${r.repository} ${r.digest}`);
        }
        const last = rows[rows.length - 1] as { repository: string; digest: string };
        after = { repository: last.repository, digest: last.digest };
      }
      // Byte order: upper case before lower case.
      assert.deepEqual(
        seen,
        [...admitted].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
      );
      assert.deepEqual(listed, [`reg/a ${D('1')}`]);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: touch records the last pull; blobReferenced sees layers, manifests and envelopes until withdrawn`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.admit(
        'reg/a',
        {
          digest: D('1'),
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 7,
          kind: 'image',
          blobs: [{ digest: D('2'), size: 3 }],
          children: [],
          policyDigest: D('p'),
          rule: 'reg',
          verified: true,
        },
        1000,
      );
      await store.recordAttestation('reg/a', {
        subject: D('1'),
        envelope: D('3'),
        size: 9,
        policyDigest: D('p'),
        signingKeys: 'k',
        createdAt: 1000,
      });
      const row = async () => (await store.manifestPage(undefined, 10))[0];
      assert.equal((await row())?.lastPulledAt, 1000, 'an admission counts as a pull');
      await store.touch('reg/a', D('1'), 5000);
      assert.equal((await row())?.lastPulledAt, 5000);
      assert.equal((await row())?.admittedAt, 1000);
      for (const c of ['1', '2', '3']) assert.equal(await store.blobReferenced(D(c)), true, c);
      assert.equal(await store.blobReferenced(D('4')), false);
      assert.deepEqual((await store.unreferenced([D('1'), D('4'), D('2'), D('3'), D('5')])).sort(), [D('4'), D('5')]);
      assert.deepEqual(await store.unreferenced([]), []);
      await store.withdraw('reg/a', D('1'));
      for (const c of ['1', '2', '3']) assert.equal(await store.blobReferenced(D(c)), false, c);
      assert.deepEqual((await store.unreferenced([D('3'), D('1')])).sort(), [D('1'), D('3')]);
    } finally {
      await cleanup();
    }
  });
  test(`${name}: storedBytes is what an admission holds: its manifest, blobs, and an index's platforms`, async () => {
    const { store, cleanup } = await open();
    try {
      const admit = (digest: string, kind: 'image' | 'index', blobs: [string, number][], children: string[] = []) =>
        store.admit(
          'reg/a',
          {
            digest,
            mediaType: `application/vnd.oci.image.${kind === 'index' ? 'index' : 'manifest'}.v1+json`,
            size: kind === 'index' ? 10 : 20,
            kind,
            blobs: blobs.map(([d, size]) => ({ digest: d, size })),
            children,
            policyDigest: D('p'),
            rule: 'reg',
            verified: true,
          },
          1,
        );
      // Two platforms sharing a layer (counted once), 3_000_000_000 bytes: beyond 32 bits.
      await admit(D('2'), 'image', [
        [D('4'), 3_000_000_000],
        [D('5'), 5],
      ]);
      await admit(D('3'), 'image', [
        [D('4'), 3_000_000_000],
        [D('6'), 6],
      ]);
      await admit(D('1'), 'index', [], [D('2'), D('3')]);
      const sizes = async (repo: string, d: string) =>
        (await store.storedBytes(repo, d)).map((b) => [b.digest, b.size] as const);
      assert.deepEqual(await sizes('reg/a', D('1')), [
        [D('1'), 10],
        [D('2'), 20],
        [D('3'), 20],
        [D('4'), 3_000_000_000],
        [D('5'), 5],
        [D('6'), 6],
      ]);
      assert.deepEqual(await sizes('reg/a', D('3')), [
        [D('3'), 20],
        [D('4'), 3_000_000_000],
        [D('6'), 6],
      ]);
      assert.deepEqual(await sizes('reg/b', D('1')), [], 'per repository');
      await store.withdraw('reg/a', D('1'));
      assert.deepEqual(await sizes('reg/a', D('1')), []);
    } finally {
      await cleanup();
    }
  });
}
