import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseByteSize, parseConfig, readSecret } from '../../../gateway/config.js';
import { LoadError } from '../../../policies/errors.js';

test('a full config parses into a frozen object with defaults filled in', () => {
  const c = parseConfig(
    '/etc/portcullis/config.yaml',
    [
      'listen: 0.0.0.0:5443',
      'dataDir: /var/lib/portcullis',
      'policy: policy.yaml',
      'logLevel: debug',
      'tagTtlSeconds: 30',
      'upstreams:',
      '  - name: ghcr.io',
      '    url: https://ghcr.io',
      '  - name: Registry.Local:5000',
      '    url: http://registry.local:5000',
      '    prefix: local',
      '    username: ci',
      '    passwordEnv: REG_PASSWORD',
      '  - { name: docker.io, url: "https://registry-1.docker.io", dockerHubMirror: true, authRealms: ["https://auth.docker.io/token"] }',
    ].join('\n'),
  );
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 5443 });
  assert.equal(c.policy, '/etc/portcullis/policy.yaml');
  assert.deepEqual(
    c.upstreams.map((u) => [u.name, u.prefix]),
    [
      ['ghcr.io', 'ghcr.io'],
      ['registry.local:5000', 'local'],
      ['docker.io', 'docker.io'],
    ],
  );
  assert.deepEqual(c.upstreams[2]?.authRealms, ['https://auth.docker.io']);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.upstreams[0]));
  assert.equal(readSecret(c.upstreams[1]?.password ?? {}, { REG_PASSWORD: 'pw' }), 'pw');
});

test('every problem is reported with its line; unknown keys, ports as prefixes and inline secrets are refused', () => {
  const text = [
    'listen: nowhere', // 1
    'colour: blue', // 2
    'upstreams:', // 3
    '  - name: registry.local:5000', // 4  (":" cannot be a prefix)
    '    url: http://registry.local:5000', // 5
    '  - name: a.example', // 6
    '    url: ftp://a.example', // 7
    '    password: hunter2', // 8
    '  - { name: b.example, url: "https://u:p@b.example" }', // 9
  ].join('\n');
  try {
    parseConfig('c.yaml', text);
    assert.fail('expected a LoadError');
  } catch (e) {
    assert.ok(e instanceof LoadError);
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.deepEqual(
      e.diagnostics.map((d) => d.line),
      [1, 2, 4, 7, 8, 9],
    );
  }
});

test('sigstore.tuf: a mirror URL, the TUF root to start from (but for the public-good mirror), a refresh period', () => {
  const parse = (lines: string[]) =>
    parseConfig('/etc/portcullis/config.yaml', ['sigstore:', '  tuf:', ...lines].join('\n'));
  assert.deepEqual(parse(['    mirror: https://tuf.example.com/', '    root: tuf/root.json']).sigstoreTuf, {
    mirror: 'https://tuf.example.com',
    root: '/etc/portcullis/tuf/root.json',
    refreshSeconds: 86_400,
  });
  assert.deepEqual(parse(['    mirror: https://tuf-repo-cdn.sigstore.dev', '    refreshSeconds: 600']).sigstoreTuf, {
    mirror: 'https://tuf-repo-cdn.sigstore.dev',
    refreshSeconds: 600,
  });
  for (const bad of [
    ['    mirror: https://tuf.example.com'],
    ['    mirror: ftp://tuf.example.com', '    root: r.json'],
    ['    mirror: https://tuf-repo-cdn.sigstore.dev', '    refreshSeconds: 0'],
    ['    mirror: https://tuf-repo-cdn.sigstore.dev', '    extra: 1'],
  ])
    assert.throws(
      () => parse(bad),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
      bad.join(' '),
    );
});

test('upstreams[].upstreamDown and breaker: serve-verified or fail, a failure count and an open time', () => {
  const parse = (extra: string) =>
    parseConfig('/c.yaml', `upstreams:\n  - { name: ghcr.io, url: "https://ghcr.io", ${extra} }\n`).upstreams[0];
  assert.equal(parse('prefix: g')?.upstreamDown, undefined);
  assert.equal(parse('prefix: g')?.breaker, undefined);
  const u = parse('upstreamDown: serve-verified, breaker: { failures: 3, openSeconds: 10 }');
  assert.equal(u?.upstreamDown, 'serve-verified');
  assert.deepEqual(u?.breaker, { failures: 3, openSeconds: 10 });
  assert.deepEqual(parse('breaker: {}')?.breaker, { failures: 5, openSeconds: 30 });
  for (const bad of [
    'upstreamDown: stale',
    'breaker: { failures: 0 }',
    'breaker: { openSeconds: 99999 }',
    'breaker: { x: 1 }',
  ])
    assert.throws(
      () => parse(bad),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
      bad,
    );
});

test('retention maxBytes: bytes or binary units, positive and bounded', () => {
  assert.equal(parseByteSize('1048576'), 1048576);
  assert.equal(parseByteSize('512MiB'), 512 * 2 ** 20);
  assert.equal(parseByteSize('1.5 TiB'), 1.5 * 2 ** 40);
  for (const bad of ['0', '-1', '1 GB', '1e9', '99999999999 TiB', 'lots', ''])
    assert.equal(parseByteSize(bad), undefined, bad);
  const r = parseConfig('/c.yaml', 'retention:\n  rules:\n    - { scope: a.io, maxBytes: 2GiB }\n').retention;
  assert.equal(r?.rules[0]?.maxBytes, 2 * 2 ** 30);
  assert.throws(
    () => parseConfig('/c.yaml', 'retention:\n  rules:\n    - { scope: a.io, maxBytes: 2GB }\n'),
    (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
  );
});

test('retention: a grace period and rules by scope, each retiring by last pull or age', () => {
  const parse = (lines: string[]) => parseConfig('/c.yaml', ['retention:', ...lines].join('\n')).retention;
  assert.deepEqual(parse(['  rules:', '    - { scope: ghcr.io/team, unpulledDays: 30 }', '    - { maxAgeDays: 90 }']), {
    graceMinutes: 60,
    rules: [
      { scope: 'ghcr.io/team', unpulledDays: 30, maxAgeDays: undefined },
      { scope: undefined, unpulledDays: undefined, maxAgeDays: 90 },
    ],
  });
  for (const bad of [
    ['  rules:', '    - { scope: ghcr.io/team }'],
    ['  rules:', '    - { scope: ghcr.io/, unpulledDays: 1 }'],
    ['  rules:', '    - { unpulledDays: 0 }'],
    ['  graceMinutes: 0'],
    ['  keepForever: true'],
  ])
    assert.throws(
      () => parse(bad),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
      bad.join(' '),
    );
});

test('clientAuth tokens, client certificates and rate limits', () => {
  const parse = (text: string) => parseConfig('/etc/p/c.yaml', text);
  const auth = (extra: string) => `clientAuth:\n${extra}  access:\n    - { scope: ghcr.io, users: ["*"] }\n`;
  assert.equal(parse(auth('  htpasswd: h\n  tokens: false\n')).clientAuth?.tokens, undefined);
  assert.deepEqual(
    parse(auth('  htpasswd: h\n  tokens: { expiresSeconds: 60, realm: "https://gw.example/v2/_portcullis/token" }\n'))
      .clientAuth?.tokens,
    { service: 'portcullis', expiresSeconds: 60, realm: 'https://gw.example/v2/_portcullis/token' },
  );
  const tls = 'tls: { cert: s.crt, key: s.key, clientCa: ca.crt, clientCerts: required }\n';
  const c = parse(tls + auth(''));
  assert.deepEqual(c.tls, {
    cert: '/etc/p/s.crt',
    key: '/etc/p/s.key',
    clientCa: '/etc/p/ca.crt',
    clientCerts: 'required',
  });
  assert.equal(c.clientAuth?.certificates, true);
  assert.equal(c.clientAuth?.htpasswd, undefined, 'certificate users need no htpasswd file');
  assert.equal(parse('tls: { cert: s.crt, key: s.key, clientCa: ca.crt }\n' + auth('')).tls?.clientCerts, 'optional');
  assert.deepEqual(parse('rateLimit: { perSecond: 20 }\n').rateLimit, { perSecond: 20, burst: 200 });
  for (const bad of [
    auth(''),
    tls,
    'tls: { cert: s.crt, key: s.key, clientCerts: required }\n' + auth('  htpasswd: h\n'),
    'tls: { cert: s.crt, key: s.key, clientCa: ca.crt, clientCerts: always }\n' + auth(''),
    'rateLimit: { perSecond: 0 }\n',
    'rateLimit: { burst: 10 }\n',
  ])
    assert.throws(
      () => parse(bad),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
      bad,
    );
});

test('clientAuth: an htpasswd file, groups, and access by scope for users or groups', () => {
  const parse = (lines: string[]) => parseConfig('/etc/p/c.yaml', ['clientAuth:', ...lines].join('\n')).clientAuth;
  assert.deepEqual(
    parse([
      '  htpasswd: htpasswd',
      '  groups: { ci: [bot] }',
      '  access:',
      '    - { scope: ghcr.io/team, groups: [ci] }',
      '    - { scope: docker.io, users: ["*"] }',
    ]),
    {
      htpasswd: '/etc/p/htpasswd',
      tokens: { service: 'portcullis', expiresSeconds: 300 },
      certificates: false,
      groups: { ci: ['bot'] },
      access: [
        { scope: 'ghcr.io/team', users: [], groups: ['ci'] },
        { scope: 'docker.io', users: ['*'], groups: [] },
      ],
    },
  );
  for (const bad of [
    ['  access: []'],
    ['  htpasswd: h', '  access:', '    - { scope: ghcr.io }'],
    ['  htpasswd: h', '  access:', '    - { scope: ghcr.io, groups: [nobody] }'],
    ['  htpasswd: h', '  access:', '    - { scope: ghcr.io/, users: [a] }'],
    ['  htpasswd: h', '  access: []', '  anonymous: true'],
    ['  htpasswd: h', '  tokens: { realm: "/v2/_portcullis/token" }', '  access: []'],
    ['  htpasswd: h', '  tokens: { expiresSeconds: 5 }', '  access: []'],
    ['  htpasswd: h', '  tokens: { service: "a b" }', '  access: []'],
  ])
    assert.throws(
      () => parse(bad),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
      bad.join(' '),
    );
});
