import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { OWNED, ownedName, ownerAlive, ownerTag, ownerTagOf } from '../../../runner/owner.js';

test('a live run is alive by its tag; its names carry the tag', () => {
  assert.equal(ownerAlive(ownerTag()), true);
  const name = ownedName('secure-run-', 'abc123');
  assert.equal(OWNED.exec(name)?.[1], ownerTag());
  assert.equal(OWNED.exec(ownedName('.tmp-', '0f1e2d3c-aaaa-bbbb'))?.[1], ownerTag());
  assert.equal(OWNED.exec('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'), null, 'a cached tree');
});

test('a dead process, or a reused pid with another start time, is dead; what this run cannot judge is alive', async () => {
  const child = spawn('sleep', ['30']);
  await new Promise((r) => child.once('spawn', r));
  const tag = ownerTagOf(child.pid as number);
  assert.equal(ownerAlive(tag), true);
  const [scope, pid, start] = tag.split('.');
  assert.equal(ownerAlive(`${scope}.${pid}.${Number(start) + 1}`), false, 'the same pid, started at another time');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ownerAlive(tag), false);
  assert.equal(ownerAlive(`00000000.${pid}.${start}`), scope !== '00000000', 'another namespace or host: never judged');
  assert.equal(ownerAlive(`${scope}.${pid}.0`), true, 'no start time: never judged');
});
