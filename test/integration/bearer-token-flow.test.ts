import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

interface Recorder {
  server: Server;
  origin: string;
  requests: { url: string; authorization: string | undefined }[];
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A token endpoint that wants bob's basic credentials and issues opaque bearer tokens. */
async function tokenServer(issued: Set<string>): Promise<Recorder> {
  const requests: Recorder['requests'] = [];
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    if (req.headers.authorization !== `Basic ${Buffer.from('bob:tok-pass').toString('base64')}`) {
      res.writeHead(401).end();
      return;
    }
    const token = randomUUID();
    issued.add(token);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
  });
  return { server, origin: await listen(server), requests };
}

/** A bearer-auth front for a real docker-registry: 401 with a challenge, or forward. */
async function bearerFront(registryUrl: string, realm: string, issued: Set<string>): Promise<Recorder> {
  const requests: Recorder['requests'] = [];
  const target = new URL(registryUrl);
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !issued.has(token)) {
      const repo = /^\/v2\/(.+)\/(manifests|blobs|tags)\//.exec(req.url ?? '')?.[1] ?? '';
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="${realm}",service="test-registry",scope="repository:${repo}:pull"`,
        'content-type': 'application/json',
      });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    const headers = { ...req.headers, host: target.host };
    delete headers.authorization;
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    req.pipe(up);
  });
  return { server, origin: await listen(server), requests };
}

describe('bearer tokens: credentialed token flow, and realms on forbidden origins', () => {
  let world: SignedWorld;
  const issued = new Set<string>();
  const servers: Server[] = [];
  let tokens: Recorder;
  let forbidden: Recorder;
  let front: Recorder;
  let hostileFront: Recorder;
  let gw: TestGateway;
  before(async () => {
    world = await buildSignedWorld();
    tokens = await tokenServer(issued);
    forbidden = await tokenServer(issued);
    front = await bearerFront(world.registry.url, `${tokens.origin}/token`, issued);
    hostileFront = await bearerFront(world.registry.url, `${forbidden.origin}/token`, issued);
    servers.push(tokens.server, forbidden.server, front.server, hostileFront.server);
    const host = world.registry.host;
    gw = await startTestGateway({
      upstreamsYaml: [
        `  - { name: "${host}", url: "${front.origin}", prefix: up, username: bob, passwordEnv: TEST_TOKEN_PASSWORD, authRealms: ["${tokens.origin}"] }`,
        `  - { name: "hostile.invalid", url: "${hostileFront.origin}", prefix: hostile, username: bob, passwordEnv: TEST_TOKEN_PASSWORD }`,
      ].join('\n'),
      // The hostile upstream's images need signatures too (a rejected name would never reach its realm).
      policy: `${worldPolicy(host)}  - scope: hostile.invalid\n    require:\n      - cosign: { keys: [trusted.pub] }\n`,
      files: { 'trusted.pub': readFileSync(world.trusted.pub) },
      env: { ...process.env, TEST_TOKEN_PASSWORD: 'tok-pass' },
    });
  });
  after(async () => {
    await gw?.stop();
    for (const s of servers) await new Promise((r) => s.close(r));
    await world?.stop();
  });

  test('a signed image is pulled with a token from the allowed realm; the token is reused', async () => {
    const out = tempDir('portcullis-out-');
    try {
      await run('skopeo', [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${gw.host}/up/test/signed:1`,
        `dir:${out.path}`,
      ]);
    } finally {
      out.cleanup();
    }
    const forSigned = tokens.requests.filter((r) => r.url.includes(encodeURIComponent('repository:test/signed:pull')));
    assert.equal(forSigned.length, 1);
    assert.ok(forSigned[0]?.url.includes('service=test-registry'));
    // The registry front never saw the basic credentials, only bearer tokens.
    assert.ok(front.requests.every((r) => r.authorization === undefined || r.authorization.startsWith('Bearer ')));
  });

  test('a realm on an origin that is not allowed is never called', async () => {
    const res = await fetch(`${gw.url}/v2/hostile/test/signed/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(res.status, 502);
    const body = (await res.json()) as { errors: { code: string; detail: { reason: string } }[] };
    assert.equal(body.errors[0]?.detail.reason, 'upstream.auth_realm_rejected');
    assert.equal(forbidden.requests.length, 0);
  });
});
