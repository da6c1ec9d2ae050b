import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadSigner } from '../../../gateway/main.js';
import { LoadError } from '../../../policies/errors.js';
import { tempDir } from '../../helpers/tmp.js';

test('the default signing key is created 0600 on first start and reused after', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'gateway.key');
    const a = loadSigner(path, true, undefined);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(loadSigner(path, true, undefined).fingerprint, a.fingerprint);
    assert.match(a.verifierId, /^urn:portcullis:gateway:sha256:[0-9a-f]{64}$/);
  } finally {
    dir.cleanup();
  }
});

test('a root-owned key readable by its group only is accepted (a Kubernetes Secret with fsGroup)', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'k.pem');
    writeFileSync(
      path,
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    chmodSync(path, 0o440);
    const owner = statSync(path).uid;
    if (owner === 0) assert.ok(loadSigner(path, false, undefined).fingerprint);
    else
      assert.throws(
        () => loadSigner(path, false, undefined),
        (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
        'group-readable is for root-owned keys only',
      );
  } finally {
    dir.cleanup();
  }
});

test('a configured key that is missing, readable by others, or not P-256 is refused', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'k.pem');
    assert.throws(
      () => loadSigner(path, false, undefined),
      (e: unknown) => e instanceof LoadError && e.code === 'FILE_UNREADABLE',
    );
    writeFileSync(
      path,
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    chmodSync(path, 0o644);
    assert.throws(
      () => loadSigner(path, false, undefined),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
    );
    for (const mode of [0o660, 0o604])
      if (process.getuid?.() === 0) {
        chmodSync(path, mode);
        assert.throws(
          () => loadSigner(path, false, undefined),
          (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
          mode.toString(8),
        );
      }
    writeFileSync(path, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    chmodSync(path, 0o600);
    assert.throws(
      () => loadSigner(path, false, undefined),
      (e: unknown) => e instanceof LoadError && e.code === 'CONFIG_INVALID',
    );
  } finally {
    dir.cleanup();
  }
});
