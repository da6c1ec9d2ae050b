import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ID_RANGE, idPlan, ROOT_ID_BASE, subRange } from '../../../runner/host.js';
import { RunnerError } from '../../../runner/errors.js';

const SUB = 'alice:100000:65536\n1001:200000:1000\n';

test("a user with subordinate ranges gets them; the container map follows the namespace's two extents", () => {
  const plan = idPlan({ uid: 1000, gid: 1000, user: 'alice', subuid: SUB, subgid: SUB });
  assert.equal(plan.mode, 'subids');
  assert.deepEqual(plan.uidMappings, [
    { containerID: 0, hostID: 0, size: 1 },
    { containerID: 1, hostID: 1, size: 65535 },
  ]);
  assert.deepEqual(plan.idMap, { idBase: 0, idSize: ID_RANGE });
  assert.deepEqual(plan.subids?.uids, { start: 100000, count: 65535 });
});

test('ranges are found by uid too, and the smaller of the uid and gid ranges bounds the container', () => {
  const plan = idPlan({ uid: 1001, gid: 1001, user: 'bob', subuid: SUB, subgid: 'bob:300000:500\n' });
  assert.equal(plan.mode, 'subids');
  assert.equal(plan.idMap?.idSize, 501);
  assert.deepEqual(plan.subids?.gids, { start: 300000, count: 500 });
});

test('without a range, or with --userns single, a user has one id', () => {
  assert.equal(idPlan({ uid: 1002, gid: 1002, user: 'carol', subuid: SUB, subgid: SUB }).mode, 'single');
  assert.equal(idPlan({ uid: 1000, gid: 1000, user: 'alice', subuid: SUB, subgid: '' }).mode, 'single');
  const single = idPlan({ uid: 1000, gid: 1000, user: 'alice', userns: 'single', subuid: SUB, subgid: SUB });
  assert.equal(single.mode, 'single');
  assert.equal(single.idMap, undefined);
});

test('malformed lines are not ranges', () => {
  assert.equal(subRange('alice:abc:10\nalice:10\nalice:0:5\nalice:5:0\n', 1000, 'alice'), undefined);
  assert.deepEqual(subRange('# c\nalice:7:3\n', 1000, 'alice'), { start: 7, count: 3 });
});

test('root gets the dedicated range, and a user range overlapping it is refused', () => {
  const plan = idPlan({ uid: 0, gid: 0, subuid: SUB, subgid: SUB });
  assert.equal(plan.mode, 'root');
  assert.deepEqual(plan.idMap, { idBase: ROOT_ID_BASE, idSize: ID_RANGE });
  assert.throws(() => idPlan({ uid: 0, gid: 0, subuid: `x:${ROOT_ID_BASE + 10}:5\n`, subgid: '' }), RunnerError);
});
