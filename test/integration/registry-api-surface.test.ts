import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  acceptAnythingPolicy,
  json,
  serveImage,
  startFaultRegistry,
  type FaultRegistry,
} from '../helpers/fault-registry.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('the OCI distribution pull API as clients see it', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  let image: ReturnType<typeof serveImage>;

  before(async () => {
    up = await startFaultRegistry();
    image = serveImage(up, 'team/app', 'v1', [{ bytes: Buffer.from('layer-bytes') }]);
    serveImage(up, 'library/alpine', 'latest', [{ bytes: Buffer.from('alpine-layer') }]);
    up.route('GET', `/v2/team/app/blobs/${image.layerDigests[0]}`, (_req, res) =>
      res.writeHead(200, { 'content-length': 11 }).end('layer-bytes'),
    );
    up.route('GET', '/v2/team/app/tags/list', (_req, res) =>
      json(res, 200, { name: 'team/app', tags: ['v3', 'v1', 'latest', 'v2', 'bad tag!'] }),
    );
    const referrer = {
      mediaType: OCI,
      digest: `sha256:${'a'.repeat(64)}`,
      size: 10,
      artifactType: 'application/vnd.example+json',
    };
    const other = {
      mediaType: OCI,
      digest: `sha256:${'b'.repeat(64)}`,
      size: 10,
      artifactType: 'application/vnd.other+json',
    };
    up.route('GET', `/v2/team/app/manifests/${image.digest.replace(':', '-')}`, (_req, res) => {
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [referrer, other],
      });
      res
        .writeHead(200, {
          'content-type': 'application/vnd.oci.image.index.v1+json',
          'content-length': Buffer.byteLength(body),
        })
        .end(body);
    });
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${up.host}", url: "${up.url}", prefix: local }`,
        `  - { name: "docker.io", url: "${up.url}", dockerHubMirror: true }`,
      ].join('\n'),
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  test('GET /v2/ answers 200 with the API version header', async () => {
    const res = await fetch(`${gw.url}/v2/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    await res.arrayBuffer();
  });

  test('HEAD and GET of a manifest carry type, length and our computed digest', async () => {
    const head = await fetch(`${gw.url}/v2/local/team/app/manifests/v1`, { method: 'HEAD', headers: { accept: OCI } });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), image.digest);
    assert.equal(head.headers.get('content-length'), String(image.manifest.length));
    assert.equal(head.headers.get('content-type'), OCI);
    const get = await fetch(`${gw.url}/v2/local/team/app/manifests/${image.digest}`, { headers: { accept: OCI } });
    assert.deepEqual(Buffer.from(await get.arrayBuffer()), image.manifest);
    const notModified = await fetch(`${gw.url}/v2/local/team/app/manifests/${image.digest}`, {
      headers: { accept: OCI, 'if-none-match': `"${image.digest}"` },
    });
    assert.equal(notModified.status, 304);
  });

  test('a blob HEAD answers its size without fetching it', async () => {
    const before = up.requests.length;
    const res = await fetch(`${gw.url}/v2/local/team/app/blobs/${image.layerDigests[0]}`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '11');
    assert.equal(up.requests.length, before);
  });

  test('tags are sorted, invalid ones dropped, and paginated with a Link header', async () => {
    const first = await fetch(`${gw.url}/v2/local/team/app/tags/list?n=2`);
    assert.deepEqual(await first.json(), { name: 'local/team/app', tags: ['latest', 'v1'] });
    assert.equal(first.headers.get('link'), '</v2/local/team/app/tags/list?n=2&last=v1>; rel="next"');
    const second = await fetch(`${gw.url}/v2/local/team/app/tags/list?n=2&last=v1`);
    assert.deepEqual(await second.json(), { name: 'local/team/app', tags: ['v2', 'v3'] });
    assert.equal(second.headers.get('link'), null);
    const bad = await fetch(`${gw.url}/v2/local/team/app/tags/list?n=99999999`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { errors: { code: string }[] }).errors[0]?.code, 'PAGINATION_NUMBER_INVALID');
  });

  test('referrers come from the fallback tag and filter by artifactType', async () => {
    const all = await fetch(`${gw.url}/v2/local/team/app/referrers/${image.digest}`);
    assert.equal(all.status, 200);
    assert.equal(all.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
    const listed = ((await all.json()) as { manifests: { digest: string; artifactType: string }[] }).manifests;
    // Admitted by `accept: anything`: the gateway vouches for nothing, so it lists no attestation of its own.
    assert.deepEqual(
      listed.map((m) => m.artifactType),
      ['application/vnd.example+json', 'application/vnd.other+json'],
    );
    const att = await fetch(`${gw.url}/v2/local/team/app/manifests/${image.digest.replace(':', '-')}.att`, {
      headers: { accept: OCI },
    });
    assert.equal(att.status, 404);
    await att.arrayBuffer();
    const some = await fetch(
      `${gw.url}/v2/local/team/app/referrers/${image.digest}?artifactType=application/vnd.example%2Bjson`,
    );
    assert.equal(some.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(
      ((await some.json()) as { manifests: { artifactType: string }[] }).manifests.map((m) => m.artifactType),
      ['application/vnd.example+json'],
    );
    const invalid = await fetch(`${gw.url}/v2/local/team/app/referrers/sha256:nothex`);
    assert.equal(invalid.status, 400);
    await invalid.arrayBuffer();
  });

  test('referrers of a digest that is not admitted: 200 with an empty index, nothing asked upstream', async () => {
    const unknown = `sha256:${'c'.repeat(64)}`;
    const before = up.requests.length;
    const res = await fetch(`${gw.url}/v2/local/team/app/referrers/${unknown}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(await res.json(), {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    });
    assert.equal(up.requests.length, before);
  });

  test('/healthz answers, and /metrics counts requests, cache use, decisions and upstream latency', async () => {
    const health = await fetch(`${gw.url}/healthz`);
    assert.deepEqual(await health.json(), { status: 'ok' });
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    for (const metric of [
      /portcullis_http_requests_total\{route="manifest",method="GET",status="200"\} [1-9]/,
      /portcullis_cache_requests_total\{kind="manifest",result="miss"\} [1-9]/,
      /portcullis_decisions_total\{result="allowed"\} [1-9]/,
      /portcullis_upstream_request_seconds_count\{[^}]*method="GET"[^}]*\} [1-9]/,
      /portcullis_bytes_served_total [0-9]/,
    ])
      assert.match(text, metric);
  });

  test('push and delete answer 405 UNSUPPORTED', async () => {
    for (const [method, path] of [
      ['PUT', '/v2/local/team/app/manifests/v9'],
      ['POST', '/v2/local/team/app/blobs/uploads/'],
      ['DELETE', `/v2/local/team/app/manifests/${image.digest}`],
    ] as const) {
      const res = await fetch(`${gw.url}${path}`, { method, body: method === 'DELETE' ? undefined : 'x' });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNSUPPORTED');
    }
  });

  test('containerd ?ns= selects a configured upstream and is echoed', async () => {
    const res = await fetch(`${gw.url}/v2/team/app/manifests/v1?ns=${up.host}`, { headers: { accept: OCI } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('oci-namespace'), up.host);
    await res.arrayBuffer();
  });

  test('Docker Hub mirror paths map to the docker.io upstream, with library/ added', async () => {
    const res = await fetch(`${gw.url}/v2/alpine/manifests/latest`, { headers: { accept: OCI } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.ok(up.requests.some((r) => r.url === '/v2/library/alpine/manifests/latest'));
  });

  const refused = [
    { what: 'an unknown ns', path: '/v2/team/app/manifests/v1?ns=169.254.169.254', status: 404, code: 'NAME_UNKNOWN' },
    {
      what: 'a repeated ns',
      path: `/v2/team/app/manifests/v1?ns=${'docker.io'}&ns=evil.io`,
      status: 400,
      code: 'NAME_INVALID',
    },
    { what: 'an escaped traversal', path: '/v2/local/a/%2e%2e/b/manifests/v1', status: 400, code: 'NAME_INVALID' },
    { what: 'an upper-case name', path: '/v2/local/Team/App/manifests/v1', status: 400, code: 'NAME_INVALID' },
    {
      what: 'a digest with a path in it',
      path: '/v2/local/team/app/blobs/sha256:..',
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'an unsupported digest algorithm',
      path: `/v2/local/team/app/manifests/md5:${'a'.repeat(32)}`,
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'a 129-character tag',
      path: `/v2/local/team/app/manifests/${'t'.repeat(129)}`,
      status: 400,
      code: 'TAG_INVALID',
    },
  ];
  for (const r of refused) {
    test(`${r.what} is refused with ${r.code} before any upstream request`, async () => {
      const before = up.requests.length;
      // node:http sends the path as written (fetch would resolve the dot segments itself).
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: gw.running.port, path: r.path, headers: { accept: OCI } },
          (response) => {
            let body = '';
            response.on('data', (c: Buffer) => (body += c.toString()));
            response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(res.status, r.status);
      assert.equal((JSON.parse(res.body) as { errors: { code: string }[] }).errors[0]?.code, r.code);
      assert.equal(up.requests.length, before);
    });
  }
});
