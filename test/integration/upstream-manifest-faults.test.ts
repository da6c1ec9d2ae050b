import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { acceptAnythingPolicy, sha256, startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { startTestGateway, storeSnapshot, type TestGateway } from '../helpers/gateway.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('hostile manifests from an upstream are refused with a clear error and store nothing', () => {
  let up: FaultRegistry;
  let gw: TestGateway;
  before(async () => {
    up = await startFaultRegistry();
    const serve = (tag: string, body: Buffer, headers: Record<string, string> = {}) => {
      for (const method of ['GET', 'HEAD']) {
        up.route(method, `/v2/bad/app/manifests/${tag}`, (req, res) => {
          res.writeHead(200, { 'content-type': OCI, 'content-length': body.length, ...headers });
          res.end(req.method === 'HEAD' ? undefined : body);
        });
      }
    };
    const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 };
    serve(
      'oversize',
      Buffer.concat([
        Buffer.from(`{"schemaVersion":2,"config":${JSON.stringify(config)},"layers":[],"pad":"`),
        Buffer.alloc(4 * 1024 * 1024, 'a'),
        Buffer.from('"}'),
      ]),
    );
    serve(
      'dupkey',
      Buffer.from(
        `{"schemaVersion":2,"mediaType":"${OCI}","config":${JSON.stringify(config)},"layers":[],"layers":[{"mediaType":"x","digest":"${sha256('a')}","size":1}]}`,
      ),
    );
    serve(
      'mismatch',
      Buffer.from(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`),
    );
    serve('schema1', Buffer.from('{"schemaVersion":1,"name":"bad/app","tag":"schema1","fsLayers":[]}'));
    const liar = Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI}","config":${JSON.stringify(config)},"layers":[]}`);
    const claimed = sha256('something else');
    up.route('GET', `/v2/bad/app/manifests/${claimed}`, (_req, res) => {
      res.writeHead(200, { 'content-type': OCI, 'content-length': liar.length, 'docker-content-digest': claimed });
      res.end(liar);
    });
    gw = await startTestGateway({
      upstreamsYaml: `  - { name: "${up.host}", url: "${up.url}", prefix: bad }`,
      policy: acceptAnythingPolicy(),
    });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  const cases = [
    { ref: 'oversize', status: 502, code: 'MANIFEST_INVALID', reason: 'upstream.body_too_large' },
    { ref: 'dupkey', status: 502, code: 'MANIFEST_INVALID', reason: 'json.duplicate_key' },
    { ref: 'mismatch', status: 502, code: 'MANIFEST_INVALID', reason: 'media.type_mismatch' },
    { ref: 'schema1', status: 415, code: 'UNSUPPORTED', reason: 'manifest.unsupported' },
    { ref: sha256('something else'), status: 502, code: 'MANIFEST_INVALID', reason: 'upstream.digest_mismatch' },
  ];
  for (const c of cases) {
    test(`${c.ref.slice(0, 20)}: ${c.status} ${c.code} (${c.reason}), nothing stored`, async () => {
      const before = await storeSnapshot(gw);
      const res = await fetch(`${gw.url}/v2/bad/bad/app/manifests/${c.ref}`, { headers: { accept: OCI } });
      assert.equal(res.status, c.status);
      const body = (await res.json()) as { errors: { code: string; detail: { reason: string } }[] };
      assert.equal(body.errors[0]?.code, c.code);
      assert.equal(body.errors[0]?.detail.reason, c.reason);
      assert.deepEqual(await storeSnapshot(gw), before);
    });
  }
});
