import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfigFile } from '../../gateway/config.js';
import { startGateway, type RunningGateway } from '../../gateway/main.js';
import { lintPolicyFiles } from '../../cli/policy-lint.js';
import { run } from '../helpers/peers.js';
import { buildSignedWorld, worldPolicy, type SignedWorld } from '../helpers/signed-world.js';
import { tempDir } from '../helpers/tmp.js';
import { SECURE_RUN_CLI, secureRunHome } from '../helpers/secure-run.js';

const CLI = fileURLToPath(new URL('../../cli/portcullis.js', import.meta.url));

describe('portcullis init, then serve with TLS: clients that trust the local CA pull over https', () => {
  let world: SignedWorld;
  let gw: RunningGateway;
  const dir = tempDir('portcullis-init-');
  const conf = join(dir.path, 'gw');

  before(async () => {
    world = await buildSignedWorld();
    const r = spawnSync(process.execPath, ['--', CLI, 'init', conf], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    await gw?.close();
    await world?.stop();
    dir.cleanup();
  });

  test('init writes a config and a policy that load, private keys 0600, and refuses to overwrite', async () => {
    assert.equal(loadConfigFile(join(conf, 'portcullis.yaml')).tls?.cert, join(conf, 'tls', 'server.crt'));
    assert.equal(await lintPolicyFiles([join(conf, 'policy.yaml')], () => undefined), 0);
    for (const key of ['keys/gateway.key', 'tls/server.key'])
      assert.equal(statSync(join(conf, key)).mode & 0o777, 0o600, key);
    assert.equal(existsSync(join(conf, 'tls', 'ca.key')), false, 'the CA key is discarded after signing');
    const again = spawnSync(process.execPath, ['--', CLI, 'init', conf], { encoding: 'utf8' });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /\[INIT_EXISTS\]/);
    assert.doesNotMatch(again.stderr, /^\s+at /m, 'a sentence, not a stack trace');
    assert.match(again.stderr, /portcullis cert/, 'it says how to add host names');
  });

  test('skopeo with the CA in its cert dir copies a signed image over https; the served key is the init key', async () => {
    writeFileSync(join(conf, 'trusted.pub'), readFileSync(world.trusted.pub));
    writeFileSync(join(conf, 'policy.yaml'), worldPolicy(world.registry.host));
    writeFileSync(
      join(conf, 'portcullis.yaml'),
      [
        'listen: 127.0.0.1:0',
        'dataDir: data',
        'policy: policy.yaml',
        'attestation:',
        '  key: keys/gateway.key',
        'tls:',
        '  cert: tls/server.crt',
        '  key: tls/server.key',
        'upstreams:',
        `  - { name: "${world.registry.host}", url: "${world.registry.url}", prefix: up }`,
        '',
      ].join('\n'),
    );
    gw = await startGateway(loadConfigFile(join(conf, 'portcullis.yaml')), { logger: pino({ level: 'silent' }) });
    assert.match(gw.url, /^https:/);
    const certs = join(dir.path, 'certs');
    mkdirSync(certs);
    copyFileSync(join(conf, 'tls', 'ca.crt'), join(certs, 'ca.crt'));
    const out = join(dir.path, 'out');
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--src-cert-dir',
      certs,
      `docker://127.0.0.1:${gw.port}/up/test/signed:1`,
      `dir:${out}`,
    ]);
    const untrusted = await run(
      'skopeo',
      ['--insecure-policy', 'inspect', '--raw', `docker://127.0.0.1:${gw.port}/up/test/signed:1`],
      { allowFail: true },
    );
    assert.notEqual(untrusted.code, 0, 'without the CA the certificate is not trusted');
    const key = await run('curl', [
      '-sf',
      '--cacert',
      join(conf, 'tls', 'ca.crt'),
      `https://127.0.0.1:${gw.port}/v2/_portcullis/gateway.pub`,
    ]);
    assert.equal(key.stdout, readFileSync(join(conf, 'keys', 'gateway.pub'), 'utf8'));
  });

  test('secure-run over https trusts the system store and --ca, with NODE_EXTRA_CA_CERTS unset', async () => {
    const fingerprint = `sha256:${createHash('sha256')
      .update(
        createPublicKey(readFileSync(join(conf, 'keys', 'gateway.pub'), 'utf8')).export({
          type: 'spki',
          format: 'der',
        }),
      )
      .digest('hex')}`;
    const url = `https://127.0.0.1:${gw.port}`;
    const image = `${world.registry.host}/test/signed:1`;
    const clean = (extra: NodeJS.ProcessEnv = {}) => {
      const e: NodeJS.ProcessEnv = { ...home.env, ...extra };
      delete e.NODE_EXTRA_CA_CERTS;
      delete e.SSL_CERT_FILE;
      return { ...e, ...extra };
    };
    const sr = (env: NodeJS.ProcessEnv, ...args: string[]) => run(SECURE_RUN_CLI, args, { env, allowFail: true });
    const home = secureRunHome();
    try {
      // Without the CA anywhere: a clear refusal, nothing pinned.
      const untrusted = await sr(clean(), 'trust', url, '--fingerprint', fingerprint);
      assert.equal(untrusted.code, 125);
      assert.match(untrusted.stderr, /TLS certificate is not trusted.*\[NOT_TRUSTED\]/);
      // The system store (a bundle with the local CA, where SSL_CERT_FILE points): trusted.
      const bundle = join(dir.path, 'system-bundle.pem');
      writeFileSync(bundle, readFileSync(join(conf, 'tls', 'ca.crt')));
      const system = clean({ SSL_CERT_FILE: bundle });
      const pinned = await sr(system, 'trust', url, '--fingerprint', fingerprint);
      assert.equal(pinned.code, 0, pinned.stderr);
      const verified = await sr(system, 'verify', image);
      assert.equal(verified.code, 0, verified.stderr);
      // --ca: kept with the pin, so later runs need nothing else.
      const other = secureRunHome();
      try {
        const env = (() => {
          const e: NodeJS.ProcessEnv = { ...other.env };
          delete e.NODE_EXTRA_CA_CERTS;
          delete e.SSL_CERT_FILE;
          return e;
        })();
        const withCa = await sr(env, 'trust', url, '--ca', join(conf, 'tls', 'ca.crt'), '--fingerprint', fingerprint);
        assert.equal(withCa.code, 0, withCa.stderr);
        const later = await sr(env, 'verify', image);
        assert.equal(later.code, 0, later.stderr);
      } finally {
        other.home.cleanup();
      }
    } finally {
      home.home.cleanup();
    }
  });

  test('cert adds host names: a new server certificate, signed by a kept CA key or else by a new CA', async () => {
    const oldCa = readFileSync(join(conf, 'tls', 'ca.crt'), 'utf8');
    const r = spawnSync(process.execPath, ['--', CLI, 'cert', conf, '--host', 'gw.example.test'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const ca = new X509Certificate(readFileSync(join(conf, 'tls', 'ca.crt')));
    const server = new X509Certificate(readFileSync(join(conf, 'tls', 'server.crt')));
    assert.match(server.subjectAltName ?? '', /DNS:gw\.example\.test/);
    assert.ok(server.verify(ca.publicKey), 'signed by the CA in tls/ca.crt');
    assert.notEqual(ca.toString(), new X509Certificate(oldCa).toString(), 'no CA key was kept: a new CA');
    assert.match(r.stdout, /must now trust/);
    assert.equal(statSync(join(conf, 'tls', 'server.key')).mode & 0o777, 0o600);
    // With a kept CA key, the CA stays: clients that trust it need nothing new.
    const kept = join(dir.path, 'kept');
    assert.equal(spawnSync(process.execPath, ['--', CLI, 'init', kept, '--keep-ca-key']).status, 0);
    const keptCa = readFileSync(join(kept, 'tls', 'ca.crt'), 'utf8');
    const k = spawnSync(process.execPath, ['--', CLI, 'cert', kept, '--host', 'other.example.test'], {
      encoding: 'utf8',
    });
    assert.equal(k.status, 0, k.stderr);
    assert.equal(readFileSync(join(kept, 'tls', 'ca.crt'), 'utf8'), keptCa);
    const renewed = new X509Certificate(readFileSync(join(kept, 'tls', 'server.crt')));
    assert.match(renewed.subjectAltName ?? '', /DNS:other\.example\.test/);
    assert.ok(renewed.verify(new X509Certificate(keptCa).publicKey));
    const none = spawnSync(process.execPath, ['--', CLI, 'cert', join(dir.path, 'nothing-here')], { encoding: 'utf8' });
    assert.equal(none.status, 1);
    assert.match(none.stderr, /\[NOT_INITIALISED\]/);
  });
});
