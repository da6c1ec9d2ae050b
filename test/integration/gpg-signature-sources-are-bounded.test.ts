import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decisionLogs, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startFaultRegistry, serveImage, type FaultRegistry } from '../helpers/fault-registry.js';
import { gpgExport, gpgHome, gpgKey, gpgSign, simpleSigningPayload } from '../helpers/gpg.js';
import { tempDir } from '../helpers/tmp.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

/**
 * Where GPG signatures come from besides a lookaside directory, and what a hostile
 * source cannot do. In-process servers, for what real ones do not do: the
 * signature API of registries that send X-Registry-Supports-Signatures (OpenShift's),
 * and lookaside servers that never stop listing, drip bytes, or announce huge bodies.
 */
describe('GPG signature sources: the registry signature API, and hostile lookaside servers', () => {
  const dir = tempDir('portcullis-gpg-src-');
  let extReg: FaultRegistry;
  let plainReg: FaultRegistry;
  let hostile: FaultRegistry;
  let gw: TestGateway;
  const images: Record<string, string> = {};

  before(async () => {
    const home = gpgHome(dir.path);
    const fpr = await gpgKey(home, 'API Signer');
    extReg = await startFaultRegistry();
    plainReg = await startFaultRegistry();
    hostile = await startFaultRegistry();
    // A registry with the signature API.
    extReg.route('GET', '/v2/', (_req, res) => {
      res.writeHead(200, { 'x-registry-supports-signatures': '1', 'content-type': 'application/json' });
      res.end('{}');
    });
    const ext = serveImage(extReg, 'x/ext', '1', [{ bytes: Buffer.from('layer') }]);
    images.ext = ext.digest;
    const sig = await gpgSign(home, fpr, simpleSigningPayload(ext.digest, `${extReg.host}/x/ext:1`));
    extReg.route('GET', `/extensions/v2/x/ext/signatures/${ext.digest}`, (_req, res) => {
      const body = JSON.stringify({
        signatures: [
          {
            schemaVersion: 2,
            name: `${ext.digest}@${'0'.repeat(32)}`,
            type: 'other',
            content: Buffer.from('ignored').toString('base64'),
          },
          {
            schemaVersion: 2,
            name: `${ext.digest}@${'1'.repeat(32)}`,
            type: 'atomic',
            content: sig.toString('base64'),
          },
        ],
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    // A registry without it, whose lookaside is hostile.
    for (const name of ['endless', 'drip', 'huge'])
      images[name] = serveImage(plainReg, `x/${name}`, '1', [{ bytes: Buffer.from(name) }]).digest;
    const at = (name: string, n: number) => `/x/${name}@${(images[name] ?? '').replace(':', '=')}/signature-${n}`;
    for (let n = 1; n <= 1000; n++) hostile.route('GET', at('endless', n), (_req, res) => res.end('garbage'));
    hostile.route('GET', at('drip', 1), (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const t = setInterval(() => res.write('x'), 200);
      res.on('close', () => clearInterval(t));
    });
    hostile.route('GET', at('huge', 1), (_req, res) => {
      res.writeHead(200, { 'content-length': String(100 * 1024 * 1024) });
      res.write(Buffer.alloc(1024));
    });
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${extReg.host}", url: "${extReg.url}", prefix: ext }`,
        `  - { name: "${plainReg.host}", url: "${plainReg.url}", prefix: plain, lookaside: "${hostile.url}", timeouts: { headersMs: 1500, idleMs: 1500, totalMs: 6000 } }`,
      ].join('\n'),
      policy: [
        'rules:',
        `  - scope: ${extReg.host}`,
        '    require:',
        '      - gpg: { keys: [k.gpg] }',
        `  - scope: ${plainReg.host}`,
        '    require:',
        '      - gpg: { keys: [k.gpg] }',
        '',
      ].join('\n'),
      files: { 'k.gpg': await gpgExport(home, fpr) },
      extraConfig: 'limits: { maxSignatures: 4 }',
    });
  });
  after(async () => {
    await gw?.stop();
    for (const r of [extReg, plainReg, hostile]) await r?.stop();
    dir.cleanup();
  });

  test('a registry that offers the signature API is asked there, and atomic signatures from it verify', async () => {
    const res = await fetch(`${gw.url}/v2/ext/x/ext/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    assert.ok(extReg.requests.some((r) => r.url.startsWith('/extensions/v2/x/ext/signatures/')));
  });

  test('a lookaside that never stops listing signatures is read only up to the limit', async () => {
    const res = await fetch(`${gw.url}/v2/plain/x/endless/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    assert.equal(res.status, 403);
    await res.arrayBuffer();
    const asked = hostile.requests.filter((r) => r.url.includes('/x/endless@')).length;
    assert.ok(asked <= 5, `${asked} lookaside requests`);
    const reasons = decisionLogs(gw).find((l) => l.digest === images.endless)?.reasons as string[];
    assert.deepEqual(reasons.filter((r) => r === 'signature.invalid').length, 4);
    assert.ok(reasons.includes('evidence.unavailable'), 'the cut-off is reported');
  });

  test('a lookaside that drips bytes is cut off by the upstream time limits', async () => {
    const started = Date.now();
    // The drip never ends: should the limit not hold, the test fails rather than waits forever.
    const res = await fetch(`${gw.url}/v2/plain/x/drip/manifests/1`, {
      headers: { accept: OCI_ACCEPT },
      signal: AbortSignal.timeout(15_000),
    });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: { detail: { reason: string } }[] };
    assert.equal(body.errors[0]?.detail.reason, 'evidence.unavailable');
    // Cut at headersMs + idleMs (3 s) for the one signature.
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });

  test('a lookaside that announces a huge signature is refused without reading it', async () => {
    const res = await fetch(`${gw.url}/v2/plain/x/huge/manifests/1`, { headers: { accept: OCI_ACCEPT } });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: { detail: { reason: string } }[] };
    assert.equal(body.errors[0]?.detail.reason, 'evidence.unavailable');
  });
});
