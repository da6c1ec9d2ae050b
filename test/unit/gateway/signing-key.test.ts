import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from '../../helpers/peers.js';
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

test("a root-owned key readable only by the process's own (non-root) group is accepted: a Kubernetes Secret with fsGroup", async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'k.pem');
    writeFileSync(
      path,
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    chmodSync(dir.path, 0o755);
    // The key loaded by a process of uid 0 and gid 10001 (setpriv), as a pod's fsGroup mount is read.
    const MAIN = fileURLToPath(new URL('../../../gateway/main.js', import.meta.url));
    const load = (fileGid: number) => {
      chownSync(path, 0, fileGid);
      chmodSync(path, 0o440);
      const script = `import(${JSON.stringify(MAIN)}).then((m) => { try { m.loadSigner(${JSON.stringify(path)}, false, undefined); console.log('ok'); } catch (e) { console.log(e.code); } })`;
      return run('setpriv', [
        '--regid',
        '10001',
        '--clear-groups',
        '--',
        process.execPath,
        '--input-type=module',
        '-e',
        script,
      ]);
    };
    assert.equal(
      process.getuid?.(),
      0,
      'this test makes a root-owned file of another group: run it as root, as CI does',
    );
    assert.equal((await load(10001)).stdout.trim(), 'ok');
    assert.equal((await load(0)).stdout.trim(), 'CONFIG_INVALID', "root's group is never enough");
    assert.equal((await load(10002)).stdout.trim(), 'CONFIG_INVALID', 'another group is not');
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
