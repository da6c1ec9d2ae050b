import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunnerError } from '../../../runner/errors.js';
import { parseNetwork } from '../../../runner/runtime/network.js';

test('--network: none, slirp, and slirp options; anything else is refused', () => {
  assert.deepEqual(parseNetwork('none'), { mode: 'none' });
  assert.deepEqual(parseNetwork('slirp'), { mode: 'slirp', allowHostLoopback: false });
  assert.deepEqual(parseNetwork('slirp4netns:allow_host_loopback=true'), { mode: 'slirp', allowHostLoopback: true });
  for (const bad of [
    'host',
    'bridge',
    'slirp:allow_host_loopback=yes',
    'slirp:allow_host_loopback=true:extra',
    'slirp:a,,b',
    'slirp:mtu=1500',
  ]) {
    assert.throws(() => parseNetwork(bad), RunnerError, bad);
  }
});
