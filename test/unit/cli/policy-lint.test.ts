import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fixture } from '../../helpers/fixtures.js';
import { tempDir } from '../../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../../cli/portcullis.js', import.meta.url));

test('portcullis policy lint: exit 0 for a good file, 1 with file:line:column for every problem', () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir.path, 'team.pub'), fixture('cosign-tv1/cosign.pub'));
    writeFileSync(
      join(dir.path, 'good.yaml'),
      'rules:\n  - scope: reg.example/team\n    require:\n      - cosign: { keys: [team.pub] }\n',
    );
    writeFileSync(
      join(dir.path, 'bad.yaml'),
      'rules:\n  - scope: reg.example/team\n    requires: []\n  - scope: reg.example/x\n    accept: all\n',
    );
    const good = spawnSync(process.execPath, ['--', CLI, 'policy', 'lint', join(dir.path, 'good.yaml')], {
      encoding: 'utf8',
    });
    assert.equal(good.status, 0, good.stderr);
    const bad = spawnSync(
      process.execPath,
      ['--', CLI, 'policy', 'lint', join(dir.path, 'good.yaml'), join(dir.path, 'bad.yaml')],
      { encoding: 'utf8' },
    );
    assert.equal(bad.status, 1);
    const lines = bad.stdout
      .trim()
      .split('\n')
      .filter((l) => l.includes('bad.yaml:'));
    assert.ok(lines.length >= 3, bad.stdout);
    assert.ok(lines.every((l) => /bad\.yaml:\d+:\d+: /.test(l)));
  } finally {
    dir.cleanup();
  }
});

test('every command answers --help', () => {
  for (const args of [
    ['--help'],
    ['serve', '--help'],
    ['policy', '--help'],
    ['policy', 'lint', '--help'],
    ['version', '--help'],
  ]) {
    const r = spawnSync(process.execPath, ['--', CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, args.join(' '));
    assert.match(r.stdout, /Usage: portcullis/);
  }
});

test('portcullis policy lint warns, with line and column, when members of a combinator trust the same key', () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir.path, 'a.pub'), fixture('cosign-tv1/cosign.pub'));
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileSync(join(dir.path, 'b.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(
      join(dir.path, 'overlap.yaml'),
      [
        'rules:',
        '  - scope: reg.example/team',
        '    require:',
        '      - atLeast: 2',
        '        of:',
        '          - cosign: { keys: [a.pub, b.pub] }',
        '          - cosign: { keys: [b.pub] }',
        '',
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, ['--', CLI, 'policy', 'lint', join(dir.path, 'overlap.yaml')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, 'a warning does not fail the lint');
    assert.match(
      r.stdout,
      /overlap\.yaml:6:\d+: warning: rules\[0\]\.require\[0\]\.of: members 1 and 2 both trust b\.pub/,
    );
  } finally {
    dir.cleanup();
  }
});
