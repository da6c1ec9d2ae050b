import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamError } from '../../../oci/errors.js';
import { CircuitBreaker } from '../../../gateway/upstream-breaker.js';

const down = () => Promise.reject(new UpstreamError('UPSTREAM_UNAVAILABLE', 'refused'));
const answer = () => Promise.reject(new UpstreamError('UPSTREAM_NOT_FOUND', 'no such manifest'));
const code = (e: unknown) => (e as { code?: string }).code;

test('the circuit opens after N failures in a row, fails at once while open, and one trial call decides', async () => {
  let now = 0;
  const events: string[] = [];
  const b = new CircuitBreaker(
    'reg.example',
    3,
    30_000,
    () => now,
    (s) => events.push(s),
    1000,
  );
  for (let i = 0; i < 2; i++) await assert.rejects(b.call(down));
  await assert.rejects(b.call(answer), (e) => code(e) === 'UPSTREAM_NOT_FOUND'); // an answer resets the count
  for (let i = 0; i < 3; i++) await assert.rejects(b.call(down));
  assert.equal(b.open, true);
  let called = false;
  await assert.rejects(
    b.call(async () => {
      called = true;
    }),
    (e) => code(e) === 'UPSTREAM_UNAVAILABLE',
  );
  assert.equal(called, false, 'an open circuit does not call the upstream');
  now = 31_000;
  // One trial at a time: a second call while the trial runs fails at once.
  let finish: () => void = () => undefined;
  const trial = b.call(() => new Promise<void>((r) => (finish = r)));
  await assert.rejects(
    b.call(async () => undefined),
    (e) => code(e) === 'UPSTREAM_UNAVAILABLE',
  );
  finish();
  await trial;
  assert.equal(b.open, false);
  await b.call(async () => undefined);
  assert.deepEqual(events, ['open', 'closed']);
});

test('a call its caller ended early does not count; one the upstream left silent past its time-out does', async () => {
  let now = 0;
  const b = new CircuitBreaker('reg.example', 1, 30_000, () => now, undefined, 1000);
  const aborted = AbortSignal.abort();
  await assert.rejects(b.call(() => ((now += 200), down()), aborted));
  assert.equal(b.open, false, 'cut short by the caller after 200 ms');
  await assert.rejects(b.call(() => ((now += 1500), down()), aborted));
  assert.equal(b.open, true, 'silent for longer than the headers time-out');
});
