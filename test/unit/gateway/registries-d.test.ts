import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadRegistriesD } from '../../../gateway/registries-d.js';
import { LoadError } from '../../../policies/errors.js';
import { tempDir } from '../../helpers/tmp.js';

const withFiles = (files: Record<string, string>) => {
  const dir = tempDir('portcullis-regd-');
  mkdirSync(dir.path, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir.path, name), text);
  return dir;
};

test('the most specific docker scope names the lookaside; default-docker covers the rest', () => {
  const dir = withFiles({
    'default.yaml': 'default-docker:\n  lookaside: file:///var/lib/containers/sigstore\n',
    'team.yaml':
      'docker:\n  reg.example:\n    lookaside: https://sigs.example/all\n  reg.example/team:\n    lookaside: https://sigs.example/team/\n    lookaside-staging: file:///tmp/staging\n  reg.example/team/quiet:\n    use-sigstore-attachments: true\n',
    'ignored.txt': 'not yaml at all: [',
  });
  try {
    const rd = loadRegistriesD(dir.path);
    assert.equal(rd.lookasideFor('reg.example/team/app'), 'https://sigs.example/team');
    assert.equal(rd.lookasideFor('reg.example/other/app'), 'https://sigs.example/all');
    assert.equal(rd.lookasideFor('reg.example/team/quiet'), undefined, 'a scope without a lookaside has none');
    assert.equal(rd.lookasideFor('elsewhere.example/x'), 'file:///var/lib/containers/sigstore');
    assert.equal(rd.lookasideFor('reg.example/teamster/x'), 'https://sigs.example/all', 'scopes match at / boundaries');
  } finally {
    dir.cleanup();
  }
});

test('duplicates, unknown keys, tag scopes and relative URLs are load errors with positions', () => {
  const bad: Record<string, string>[] = [
    { 'a.yaml': 'default-docker:\n  lookaside: https://a\n', 'b.yaml': 'default-docker:\n  lookaside: https://b\n' },
    {
      'a.yaml': 'docker:\n  reg.example:\n    lookaside: https://a\n',
      'b.yaml': 'docker:\n  reg.example:\n    lookaside: https://b\n',
    },
    { 'a.yaml': 'docker:\n  reg.example:\n    lookasid: https://a\n' },
    { 'a.yaml': 'docker:\n  reg.example/app:1:\n    lookaside: https://a\n' },
    { 'a.yaml': 'docker:\n  reg.example:\n    lookaside: sigs/relative\n' },
    { 'a.yaml': 'docker:\n  reg.example:\n    lookaside: https://a\n    sigstore: https://b\n' },
  ];
  for (const files of bad) {
    const dir = withFiles(files);
    try {
      assert.throws(
        () => loadRegistriesD(dir.path),
        (e: unknown) =>
          e instanceof LoadError && e.code === 'CONFIG_INVALID' && e.diagnostics.every((d) => d.line >= 1),
        JSON.stringify(files),
      );
    } finally {
      dir.cleanup();
    }
  }
});
