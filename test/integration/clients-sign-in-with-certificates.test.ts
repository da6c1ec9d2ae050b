import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfigFile } from '../../gateway/config.js';
import { startGateway, type RunningGateway } from '../../gateway/main.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Mutual TLS with the CA from `portcullis init --keep-ca-key`: `portcullis
 * client-cert --user NAME` issues a client certificate, the gateway (tls.clientCa)
 * takes its CN as the user, and clientAuth's pull rights apply. With `clientCerts:
 * required` a connection without a certificate from that CA is refused in the
 * handshake; with `optional`, users may sign in with a password instead. skopeo pulls
 * with its cert dir.
 */
const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));
const cli = (...args: string[]) => spawnSync(process.execPath, ['--', CLI, ...args], { encoding: 'utf8' });

describe('clients sign in with certificates from the init CA', () => {
  let world: SignedWorld;
  const gateways: RunningGateway[] = [];
  const dir = tempDir('portcullis-mtls-');
  const conf = join(dir.path, 'gw');

  before(async () => {
    world = await buildSignedWorld();
    assert.equal(cli('init', conf, '--keep-ca-key').status, 0);
    writeFileSync(join(conf, 'trusted.pub'), readFileSync(world.trusted.pub));
    writeFileSync(join(conf, 'policy.yaml'), worldPolicy(world.registry.host));
  });
  after(async () => {
    for (const g of gateways) await g.close();
    await world?.stop();
    dir.cleanup();
  });

  const serve = async (name: string, clientCerts: 'required' | 'optional', extra: string[] = []) => {
    writeFileSync(
      join(conf, `${name}.yaml`),
      [
        'listen: 127.0.0.1:0',
        `dataDir: data-${name}`,
        'policy: policy.yaml',
        'attestation:',
        '  key: keys/gateway.key',
        'tls:',
        '  cert: tls/server.crt',
        '  key: tls/server.key',
        '  clientCa: tls/ca.crt',
        `  clientCerts: ${clientCerts}`,
        'clientAuth:',
        ...extra,
        '  access:',
        `    - { scope: "${world.registry.host}/test", users: [alice] }`,
        'upstreams:',
        `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
        '',
      ].join('\n'),
    );
    const gw = await startGateway(loadConfigFile(join(conf, `${name}.yaml`)), { logger: pino({ level: 'silent' }) });
    gateways.push(gw);
    return gw;
  };

  /** A GET over TLS that trusts the init CA, with a client certificate or none: status, or the handshake's error code. */
  const get = (
    port: number,
    path: string,
    client?: { cert: string; key: string },
    headers: Record<string, string> = {},
  ) =>
    new Promise<number | string>((resolve) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path,
          ca: readFileSync(join(conf, 'tls', 'ca.crt')),
          ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...headers },
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'ERROR'));
      req.end();
    });

  test('client-cert issues a 0600 key for a user, refuses names and overwrites, and needs the kept CA key', () => {
    const r = cli('client-cert', conf, '--user', 'alice');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(join(conf, 'clients', 'alice.key')).mode & 0o777, 0o600);
    assert.match(cli('client-cert', conf, '--user', 'alice').stderr, /\[INIT_EXISTS\]/);
    assert.match(cli('client-cert', conf, '--user', 'bad/name').stderr, /\[USER_INVALID\]/);
    assert.equal(cli('client-cert', conf, '--user', 'bob').status, 0);
    const other = join(dir.path, 'other');
    assert.equal(cli('init', other).status, 0);
    const noKey = cli('client-cert', other, '--user', 'alice');
    assert.equal(noKey.status, 1);
    assert.match(noKey.stderr, /\[CA_KEY_INVALID\]/);
  });

  test('required: the certificate signs alice in; none, or one from another CA, gets no connection', async () => {
    const gw = await serve('required', 'required');
    const alice = { cert: join(conf, 'clients', 'alice.crt'), key: join(conf, 'clients', 'alice.key') };
    const bob = { cert: join(conf, 'clients', 'bob.crt'), key: join(conf, 'clients', 'bob.key') };
    assert.equal(await get(gw.port, '/v2/up/test/signed/manifests/1', alice), 200);
    assert.equal(await get(gw.port, '/v2/up/test/signed/manifests/1', bob), 403, 'bob signs in but may not pull');
    assert.equal(typeof (await get(gw.port, '/v2/')), 'string', 'no certificate: no TLS connection');
    const stranger = join(dir.path, 'stranger');
    assert.equal(cli('init', stranger, '--keep-ca-key').status, 0);
    assert.equal(cli('client-cert', stranger, '--user', 'alice').status, 0);
    const forged = { cert: join(stranger, 'clients', 'alice.crt'), key: join(stranger, 'clients', 'alice.key') };
    assert.equal(typeof (await get(gw.port, '/v2/', forged)), 'string', 'another CA: no TLS connection');

    // skopeo: the CA and alice's pair in its cert dir (*.crt for CAs, NAME.cert with NAME.key for the client).
    const certs = join(dir.path, 'skopeo-certs');
    mkdirSync(certs);
    copyFileSync(join(conf, 'tls', 'ca.crt'), join(certs, 'ca.crt'));
    copyFileSync(alice.cert, join(certs, 'alice.cert'));
    copyFileSync(alice.key, join(certs, 'alice.key'));
    const copy = await run(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--src-cert-dir',
        certs,
        `docker://127.0.0.1:${gw.port}/up/test/signed:1`,
        `dir:${join(dir.path, 'out')}`,
      ],
      { allowFail: true },
    );
    assert.equal(copy.code, 0, copy.stderr);
  });

  test('optional: a certificate or a password signs in; neither gets a challenge', async () => {
    await run('htpasswd', ['-cbB', join(conf, 'htpasswd'), 'alice', 'alice-pw-31f0']);
    const gw = await serve('optional', 'optional', ['  htpasswd: htpasswd']);
    const alice = { cert: join(conf, 'clients', 'alice.crt'), key: join(conf, 'clients', 'alice.key') };
    assert.equal(await get(gw.port, '/v2/up/test/signed/manifests/1', alice), 200);
    assert.equal(await get(gw.port, '/v2/up/test/signed/manifests/1'), 401);
    const pw = `Basic ${Buffer.from('alice:alice-pw-31f0').toString('base64')}`;
    assert.equal(await get(gw.port, '/v2/up/test/signed/manifests/1', undefined, { authorization: pw }), 200);
  });
});
