import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { cosignVerify } from '../helpers/cosign.js';
import { decisionLogs, startTestGateway, storeSnapshot, type TestGateway } from '../helpers/gateway.js';
import { testPodman } from '../helpers/podman.js';
import { buildSignedWorld, getManifest, putManifest, sigTag, type SignedWorld } from '../helpers/signed-world.js';

/**
 * An upstream that controls what it serves at signature tags and as referrers must
 * not get an unsigned, runnable image through the gateway as an "attachment": not
 * at an ordinary tag (through the HEAD digest claim), not by digest, not as the
 * platform manifest of an index. Real docker-registry upstream, real cosign, podman.
 */
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const IN_TOTO = 'application/vnd.in-toto+json';

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
interface Img {
  config: Desc;
  layers: Desc[];
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('attachments are never served as images', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  let reg: string;
  let unsigned: Img;
  let signedDesc: Desc;

  const put = async (
    repo: string,
    ref: string,
    doc: unknown,
    type = OCI,
  ): Promise<{ digest: string; bytes: Buffer }> => {
    const bytes = Buffer.from(JSON.stringify(doc));
    const res = await fetch(`${reg}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      headers: { 'content-type': type },
      body: bytes,
    });
    assert.equal(res.status, 201, await res.text());
    return { digest: sha(bytes), bytes };
  };
  const putBlob = async (repo: string, bytes: Buffer): Promise<Desc> => {
    const start = await fetch(`${reg}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    const loc = new URL(start.headers.get('location') as string, reg);
    loc.searchParams.set('digest', sha(bytes));
    const done = await fetch(loc, {
      method: 'PUT',
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(done.status, 201, await done.text());
    return { mediaType: IN_TOTO, digest: sha(bytes), size: bytes.length };
  };
  const mount = async (repo: string, from: string, digests: string[]) => {
    for (const d of digests) {
      const res = await fetch(`${reg}/v2/${repo}/blobs/uploads/?mount=${d}&from=${from}`, { method: 'POST' });
      assert.equal(res.status, 201);
    }
  };
  const viaGateway = (repo: string, ref: string, accept = `${OCI}, ${INDEX}`) =>
    fetch(`${gw.url}/v2/up/${repo}/manifests/${ref}`, { headers: { accept } });
  const errorOf = async (res: Response) =>
    ((await res.json()) as { errors: { code: string; message: string; detail?: { reason?: string } }[] }).errors[0];

  before(async () => {
    world = await buildSignedWorld();
    reg = world.registry.url;
    const r = world.registry.host;
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${r}", url: "${reg}", prefix: up }`,
      policy: [
        'version: 1',
        'default: reject',
        'rules:',
        `  - scope: ${r}/test`,
        '    require:',
        '      - cosign: { keys: [trusted.pub] }',
        `  - scope: ${r}/test/platform`,
        '    index: signed-platform',
        '    require:',
        '      - cosign: { keys: [trusted.pub] }',
        '',
      ].join('\n'),
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
    });
    unsigned = JSON.parse((await getManifest(reg, 'test/unsigned', '1', {})).toString()) as Img;
    const signedBytes = await getManifest(reg, 'test/signed', '1', {});
    signedDesc = { mediaType: OCI, digest: world.digests.signed, size: signedBytes.length };
    // The unsigned image's blobs, available in the repositories the attacks use.
    const blobs = [unsigned.config.digest, ...unsigned.layers.map((l) => l.digest)];
    for (const repo of ['test/signed', 'test/platform']) await mount(repo, 'test/unsigned', blobs);
    // test/signed is admitted on its real signature before anything else happens.
    const admitted = await viaGateway('test/signed', '1');
    assert.equal(admitted.status, 200);
    await admitted.arrayBuffer();
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
  });

  test('a runnable image at the .sig tag is refused as an attachment, and never served for an ordinary tag', async () => {
    // The real signature layer, plus the unsigned image's tar layers labelled in-toto, on its real config.
    const realSig = JSON.parse(
      (await getManifest(reg, 'test/signed', sigTag(world.digests.signed), {})).toString(),
    ) as Img;
    const disguised = {
      schemaVersion: 2,
      mediaType: OCI,
      config: unsigned.config,
      layers: [...realSig.layers, ...unsigned.layers.map((l) => ({ ...l, mediaType: IN_TOTO }))],
    };
    const planted = await put('test/signed', sigTag(world.digests.signed), disguised);
    await put('test/signed', 'evil', disguised);
    const before = await storeSnapshot(gw);
    // The user's own cosign verify through the gateway is what used to plant it.
    const verify = await cosignVerify(world.trusted, `${gw.host}/up/test/signed@${world.digests.signed}`);
    assert.notEqual(verify.code, 0, 'a .sig tag holding tar layers is not served');
    const sig = await viaGateway('test/signed', sigTag(world.digests.signed));
    assert.equal(sig.status, 502);
    assert.equal((await errorOf(sig))?.code, 'MANIFEST_INVALID');
    // The upstream's tag `evil` claims the planted digest: it is decided as an image, and denied.
    const evil = await viaGateway('test/signed', 'evil');
    assert.equal(evil.status, 403);
    assert.equal((await errorOf(evil))?.detail?.reason, 'signature.missing');
    const podman = testPodman(
      ['[[registry]]', `prefix = "${gw.host}"`, `location = "${gw.host}"`, 'insecure = true', ''].join('\n'),
    );
    try {
      const pulled = await podman.pull(`${gw.host}/up/test/signed:evil`);
      assert.notEqual(pulled.code, 0, 'podman must not pull the planted image');
      const byDigest = await podman.pull(`${gw.host}/up/test/signed@${planted.digest}`);
      assert.notEqual(byDigest.code, 0, 'nor by its digest');
    } finally {
      podman.cleanup();
    }
    assert.deepEqual(await storeSnapshot(gw), before, 'nothing of the planted image was stored');
    // Put the real signature back for the tests below.
    await putManifest(reg, 'test/signed', sigTag(world.digests.signed), Buffer.from(JSON.stringify(realSig)), {});
  });

  test('a referrer of an admitted image whose layers are tar archives is decided as an image, and denied', async () => {
    const referrer = {
      schemaVersion: 2,
      mediaType: OCI,
      artifactType: IN_TOTO,
      config: unsigned.config,
      layers: unsigned.layers.map((l) => ({ ...l, mediaType: IN_TOTO })),
      subject: signedDesc,
    };
    const { digest } = await put('test/signed', 'referrer-planted', referrer);
    const res = await viaGateway('test/signed', digest);
    assert.equal(res.status, 403);
    assert.equal((await errorOf(res))?.detail?.reason, 'signature.missing');
    assert.ok(
      decisionLogs(gw).some((l) => l.digest === digest && l.allowed === false),
      'the referrer was decided by the policy',
    );
    const blob = await fetch(
      `${gw.url}/v2/up/test/signed/blobs/${unsigned.layers[unsigned.layers.length - 1]?.digest}`,
    );
    assert.equal(blob.status, 404, 'its layers are not served either');
    await blob.arrayBuffer();
  });

  test('a real attestation referrer (JSON content, empty config) is still served', async () => {
    const statement = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [] }));
    const layer = await putBlob('test/signed', statement);
    const empty = await putBlob('test/signed', Buffer.from('{}'));
    const referrer = {
      schemaVersion: 2,
      mediaType: OCI,
      artifactType: IN_TOTO,
      config: { ...empty, mediaType: 'application/vnd.oci.empty.v1+json' },
      layers: [layer],
      subject: signedDesc,
    };
    const { digest, bytes } = await put('test/signed', 'referrer-real', referrer);
    const res = await viaGateway('test/signed', digest);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    const blob = await fetch(`${gw.url}/v2/up/test/signed/blobs/${layer.digest}`);
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), statement);
    // Its digest never answers an ordinary tag of the repository, whatever the upstream's HEAD claims.
    await put('test/signed', 'claims-referrer', referrer);
    const tagged = await viaGateway('test/signed', 'claims-referrer');
    assert.equal(tagged.status, 403);
    await tagged.arrayBuffer();
  });

  test('under index: signed-platform, a platform manifest with a subject is decided, not stored as an attachment', async () => {
    // An index admitted as a list (signed-platform) is the subject the child names.
    const unsignedBytes = await getManifest(reg, 'test/unsigned', '1', {});
    await putManifest(reg, 'test/platform', world.digests.unsigned, unsignedBytes, {});
    const platform = { os: 'linux', architecture: 'amd64' };
    const listOf = (digest: string, size: number) => ({
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: [{ mediaType: OCI, digest, size, platform }],
    });
    const other = await put('test/platform', '0', listOf(world.digests.unsigned, unsignedBytes.length), INDEX);
    const first = await viaGateway('test/platform', '0');
    assert.equal(first.status, 200, 'an index is admitted as a list');
    await first.arrayBuffer();
    // JSON layers, not archives: it would pass as attachment content; listed by an index, it is decided.
    const note = await putBlob('test/platform', Buffer.from(JSON.stringify({ note: 'not an image' })));
    const child = {
      schemaVersion: 2,
      mediaType: OCI,
      config: unsigned.config,
      layers: [note],
      subject: { mediaType: INDEX, digest: other.digest, size: other.bytes.length },
    };
    const c = await put('test/platform', 'child', child);
    await put('test/platform', '1', listOf(c.digest, c.bytes.length), INDEX);
    const listed = await viaGateway('test/platform', '1');
    assert.equal(listed.status, 200);
    await listed.arrayBuffer();
    const res = await viaGateway('test/platform', c.digest);
    assert.equal(res.status, 403);
    assert.equal((await errorOf(res))?.detail?.reason, 'signature.missing');
  });
});
