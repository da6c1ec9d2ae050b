import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startContainerd, startDockerEngine, type TestEngine } from '../helpers/engines.js';
import type { TestGateway } from '../helpers/gateway.js';
import { run } from '../helpers/peers.js';
import { testPodman } from '../helpers/podman.js';
import { buildSignedWorld, gatewayForWorld, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The Docker registry token flow with tokens the gateway issues itself: the real
 * docker, podman, skopeo and containerd log in the way they do with Docker Hub or
 * Harbor (a Bearer challenge, the realm asked with the user's credentials — GET, or
 * OAuth2's POST as containerd tries first — then the token), and pull. A token is good
 * only for the repositories it names, a tampered or traded one is refused, and pull
 * rights are checked on every request.
 */
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
type Errors = { errors: { code: string; detail?: { reason?: string } }[] };

describe('clients log in with tokens the gateway issues', () => {
  let world: SignedWorld;
  let gw: TestGateway;
  const dir = tempDir('portcullis-tokens-');
  const alicePw = 'alice-pw-0c3b';
  const bobPw = 'bob-pw-9e12';
  before(async () => {
    world = await buildSignedWorld();
    const htpasswd = join(dir.path, 'htpasswd');
    await run('htpasswd', ['-cbB', htpasswd, 'alice', alicePw]);
    await run('htpasswd', ['-bB', htpasswd, 'bob', bobPw]);
    gw = await gatewayForWorld(world, {
      extraConfig: [
        'clientAuth:',
        '  htpasswd: htpasswd',
        '  access:',
        `    - { scope: "${world.registry.host}/test", users: [alice] }`,
      ].join('\n'),
      files: { htpasswd: readFileSync(htpasswd) },
    });
  });
  after(async () => {
    await gw?.stop();
    await world?.stop();
    dir.cleanup();
  });

  const get = (path: string, authorization?: string) =>
    fetch(`${gw.url}${path}`, { headers: { accept: OCI, ...(authorization ? { authorization } : {}) } });
  const tokenFor = async (authorization: string, ...scopes: string[]) => {
    const q = new URLSearchParams([['service', 'portcullis'], ...scopes.map((s) => ['scope', s] as [string, string])]);
    const res = await get(`/v2/_portcullis/token?${q.toString()}`, authorization);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as { token: string; access_token: string; expires_in: number };
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 300);
    return body.token;
  };

  test('the challenge names the realm, the service and the scope; a token pulls what it names only', async () => {
    const none = await get('/v2/up/test/signed/manifests/1');
    assert.equal(none.status, 401);
    assert.equal(
      none.headers.get('www-authenticate'),
      `Bearer realm="http://${gw.host}/v2/_portcullis/token",service="portcullis",scope="repository:up/test/signed:pull"`,
    );
    await none.arrayBuffer();

    const token = await tokenFor(basic('alice', alicePw), 'repository:up/test/signed:pull');
    const ok = await get('/v2/up/test/signed/manifests/1', `Bearer ${token}`);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const v2 = await get('/v2/', `Bearer ${token}`);
    assert.equal(v2.status, 200);
    await v2.arrayBuffer();

    // Another repository: the client is asked for a token that covers it.
    const other = await get('/v2/up/test/unsigned/manifests/1', `Bearer ${token}`);
    assert.equal(other.status, 401);
    assert.match(
      other.headers.get('www-authenticate') ?? '',
      /scope="repository:up\/test\/unsigned:pull",error="insufficient_scope"/,
    );
    assert.equal(((await other.json()) as Errors).errors[0]?.detail?.reason, 'auth.scope');

    // A token signed by anyone else, or changed, is no token.
    const [h, p, sig] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'bob' })).toString('base64url');
    for (const bad of [`${h}.${forged}.${sig}`, `${h}.${p}.${sig.slice(0, -2)}AA`, `eyJhbGciOiJub25lIn0.${p}.`]) {
      const res = await get('/v2/up/test/signed/manifests/1', `Bearer ${bad}`);
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as Errors).errors[0]?.detail?.reason, 'auth.required');
    }
    // A token is not traded for another (a stolen one cannot be widened).
    const traded = await get('/v2/_portcullis/token?scope=repository:up/test/unsigned:pull', `Bearer ${token}`);
    assert.equal(traded.status, 401);
    assert.equal(traded.headers.get('www-authenticate'), 'Basic realm="portcullis"');
    await traded.arrayBuffer();
  });

  test('no way around the sign-in: encoded paths, absolute targets, traded tokens, quotes in names', async () => {
    const raw = (path: string, headers: Record<string, string> = {}, method = 'GET', body?: string) =>
      new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const u = new URL(gw.url);
        const req = httpRequest({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end(body);
      });
    for (const path of [
      '/v%32/_portcullis/token?scope=repository:up/test/signed:pull',
      '/v2/_portcullis/toke%6E?scope=repository:up/test/signed:pull',
      '/v%32/',
    ]) {
      const r = await raw(path);
      assert.equal(r.status, 401, path);
      assert.ok(!r.body.includes('token"'), `${path}: no token without credentials`);
    }
    for (const path of [`http://${gw.host}/v2/_portcullis/token`, `http://${gw.host}/v2/`]) {
      assert.equal((await raw(path)).status, 400, path);
    }
    const token = await tokenFor(basic('alice', alicePw), 'repository:up/test/signed:pull');
    const traded = await raw('/v2/_portcullis/toke%6E?scope=repository:up/test/unsigned:pull', {
      authorization: `Bearer ${token}`,
    });
    assert.equal(traded.status, 401, 'an encoded token path is the token path');
    const posted = await raw(
      '/v%32/_portcullis/token',
      { 'content-type': 'application/x-www-form-urlencoded' },
      'POST',
      'grant_type=password&username=alice&password=nope',
    );
    assert.equal(posted.status, 401);
    const quoted = await raw('/v2/a%22,realm=%22http://elsewhere.example/t/manifests/1');
    assert.equal(quoted.status, 401);
    assert.doesNotMatch(String(quoted.headers['www-authenticate']), /elsewhere/);
    const json = await fetch(`${gw.url}/v2/_portcullis/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basic('alice', alicePw) },
      body: '{}',
    });
    assert.equal(json.status, 415);
    await json.arrayBuffer();
  });

  test('a user without the right gets one refusal, whatever exists; wrong passwords get no token', async () => {
    const token = await tokenFor(
      basic('bob', bobPw),
      'repository:up/test/signed:pull',
      'repository:up/test/no-such-image:pull',
    );
    const answers = [];
    for (const name of ['up/test/signed', 'up/test/no-such-image']) {
      const res = await get(`/v2/${name}/manifests/1`, `Bearer ${token}`);
      answers.push([res.status, await res.text()]);
    }
    assert.equal(answers[0]?.[0], 403);
    assert.deepEqual(answers[1], answers[0]);
    assert.equal((JSON.parse(answers[0]?.[1] as string) as Errors).errors[0]?.detail?.reason, 'access.denied');

    const wrong = await get('/v2/_portcullis/token?scope=repository:up/test/signed:pull', basic('alice', 'nope'));
    assert.equal(wrong.status, 401);
    await wrong.arrayBuffer();
    const bad = await get('/v2/_portcullis/token?scope=repository:UP:pull', basic('alice', alicePw));
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as Errors).errors[0]?.detail?.reason, 'auth.scope');
    const service = await get('/v2/_portcullis/token?service=elsewhere', basic('alice', alicePw));
    assert.equal(service.status, 400);
    await service.arrayBuffer();

    // OAuth2's password grant, as containerd asks.
    const post = (form: Record<string, string>) =>
      fetch(`${gw.url}/v2/_portcullis/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
    const granted = await post({
      grant_type: 'password',
      username: 'alice',
      password: alicePw,
      service: 'portcullis',
      scope: 'repository:up/test/signed:pull',
      client_id: 'containerd-client',
    });
    assert.equal(granted.status, 200);
    const { access_token } = (await granted.json()) as { access_token: string };
    const viaPost = await get('/v2/up/test/signed/manifests/1', `Bearer ${access_token}`);
    assert.equal(viaPost.status, 200);
    await viaPost.arrayBuffer();
    const refused = await post({ grant_type: 'password', username: 'alice', password: 'nope' });
    assert.equal(refused.status, 401);
    await refused.arrayBuffer();
    const refresh = await post({ grant_type: 'refresh_token', refresh_token: 'x' });
    assert.equal(refresh.status, 400);
    await refresh.arrayBuffer();
    const nobody = await post({ scope: 'repository:up/test/signed:pull' });
    assert.equal(nobody.status, 401);
    await nobody.arrayBuffer();
    assert.ok(!JSON.stringify(gw.logs).includes(alicePw), 'a password is never logged');
    assert.ok(!JSON.stringify(gw.logs).includes(access_token), 'a token is never logged');
  });

  test('skopeo logs in and copies', async () => {
    const auth = join(dir.path, 'skopeo-auth.json');
    const login = await run(
      'skopeo',
      ['login', '--tls-verify=false', '--authfile', auth, '--username', 'alice', '--password-stdin', gw.host],
      { input: `${alicePw}\n`, allowFail: true },
    );
    assert.equal(login.code, 0, login.stderr);
    const copy = await run(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        '--authfile',
        auth,
        `docker://${gw.host}/up/test/signed:1`,
        `dir:${join(dir.path, 'skopeo-out')}`,
      ],
      { allowFail: true },
    );
    assert.equal(copy.code, 0, copy.stderr);
  });

  test('podman logs in and pulls; a wrong password is refused at login', async () => {
    const podman = testPodman(['[[registry]]', `location = "${gw.host}"`, 'insecure = true', ''].join('\n'));
    try {
      assert.notEqual((await podman.login(gw.host, 'alice', 'nope')).code, 0);
      const login = await podman.login(gw.host, 'alice', alicePw);
      assert.equal(login.code, 0, login.stderr);
      const pulled = await podman.pull(`${gw.host}/up/test/signed:1`);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(await podman.digestOf(`${gw.host}/up/test/signed:1`), world.digests.signed);
    } finally {
      podman.cleanup();
    }
  });

  describe('engines', () => {
    let docker: TestEngine | undefined;
    let containerd: TestEngine | undefined;
    const engineDir = (name: string) => {
      const d = join(dir.path, name);
      mkdirSync(d);
      return d;
    };
    after(async () => {
      await docker?.stop();
      await containerd?.stop();
    });

    test('Docker Engine: docker login, then docker pull', async () => {
      docker = await startDockerEngine(engineDir('docker'));
      const wrong = await docker.cli(['login', '--username', 'alice', '--password-stdin', gw.host], {
        input: 'nope\n',
      });
      assert.notEqual(wrong.code, 0);
      const login = await docker.cli(['login', '--username', 'alice', '--password-stdin', gw.host], {
        input: `${alicePw}\n`,
      });
      assert.equal(login.code, 0, `${login.stderr}\n${docker.log()}`);
      const ref = `${gw.host}/up/test/signed:1`;
      const pulled = await docker.cli(['pull', ref]);
      assert.equal(pulled.code, 0, `${pulled.stderr}\n${docker.log()}`);
      const id = await docker.cli(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref]);
      assert.match(id.stdout, new RegExp(world.digests.signed));
      await docker.cli(['logout', gw.host]);
      const anonymous = await docker.cli(['pull', `${gw.host}/up/test/unsigned:1`]);
      assert.notEqual(anonymous.code, 0);
      assert.match(anonymous.stderr, /unauthorized|authentication required|no basic auth/i);
    });

    test('containerd: ctr pull --user, through a hosts.toml mirror (OAuth2 POST first, as containerd does)', async () => {
      containerd = await startContainerd(engineDir('containerd'));
      const hosts = join(dir.path, 'certs.d');
      mkdirSync(join(hosts, world.registry.host), { recursive: true });
      writeFileSync(
        join(hosts, world.registry.host, 'hosts.toml'),
        [
          `server = "http://${gw.host}"`,
          '',
          `[host."http://${gw.host}"]`,
          '  capabilities = ["pull", "resolve"]',
          '',
        ].join('\n'),
      );
      const ref = `${world.registry.host}/test/signed:1`;
      const mark = gw.logs.length;
      const anonymous = await containerd.cli(['images', 'pull', '--hosts-dir', hosts, ref]);
      assert.notEqual(anonymous.code, 0);
      const r = await containerd.cli(['images', 'pull', '--hosts-dir', hosts, '--user', `alice:${alicePw}`, ref]);
      assert.equal(r.code, 0, `${r.stderr}\n${containerd.log()}`);
      const listed = await containerd.cli(['images', 'ls']);
      assert.match(listed.stdout, new RegExp(world.digests.signed));
      assert.ok(gw.logs.length > mark);
    });
  });
});
