import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diagnose, type DoctorInput } from '../../../runner/doctor.js';

const files = (over: Record<string, string | undefined>) => (p: string) => over[p];
const all = (p: string) => `/usr/bin/${p}`;
const base: DoctorInput = {
  uid: 1000,
  user: 'dev',
  read: files({ '/proc/sys/user/max_user_namespaces': '15000\n' }),
  which: all,
  canReadWrite: () => true,
  dataDir: '/home/dev/.local/share/secure-run',
  mode: () => 0o40755,
};
const status = (i: DoctorInput, check: string) => diagnose(i).find((f) => f.check === check)?.status;

test('a ready machine has no failures', () => {
  assert.ok(diagnose(base).every((f) => f.status !== 'fail'));
});

test('disabled user namespaces, the AppArmor restriction and a missing bwrap fail with a fix', () => {
  assert.equal(
    status({ ...base, read: files({ '/proc/sys/user/max_user_namespaces': '0' }) }, 'user namespaces'),
    'fail',
  );
  const apparmor = {
    ...base,
    read: files({
      '/proc/sys/user/max_user_namespaces': '15000',
      '/proc/sys/kernel/apparmor_restrict_unprivileged_userns': '1',
    }),
  };
  assert.equal(status(apparmor, 'AppArmor user-namespace restriction'), 'fail');
  const noBwrap = { ...base, which: (p: string) => (p === 'bwrap' ? undefined : all(p)) };
  const f = diagnose(noBwrap).find((x) => x.check === 'bwrap');
  assert.equal(f?.status, 'fail');
  assert.match(f?.fix ?? '', /apt-get install bubblewrap/);
});

test('hybrid cgroups are recognised; missing subordinate ids are a warning', () => {
  const hybrid = {
    ...base,
    read: files({
      '/proc/sys/user/max_user_namespaces': '1',
      '/proc/self/mountinfo': '41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n',
    }),
  };
  assert.match(diagnose(hybrid).find((f) => f.check === 'cgroups')?.detail ?? '', /hybrid/);
  assert.equal(status(base, 'subordinate ids'), 'warn');
});

test('subordinate ids are used when newuidmap is there; slirp needs /dev/net/tun open to the user', () => {
  const withRange = {
    ...base,
    read: files({
      '/proc/sys/user/max_user_namespaces': '15000\n',
      '/etc/subuid': 'dev:100000:65536\n',
      '/etc/subgid': 'dev:100000:65536\n',
    }),
  };
  assert.equal(status(withRange, 'subordinate ids'), 'ok');
  assert.equal(
    status({ ...withRange, which: (p: string) => (p === 'newuidmap' ? undefined : all(p)) }, 'subordinate ids'),
    'warn',
  );
  assert.equal(status(base, 'slirp4netns'), 'ok');
  assert.equal(status({ ...base, canReadWrite: () => false }, 'slirp4netns'), 'warn');
  assert.equal(status({ ...base, uid: 0, canReadWrite: () => false }, 'slirp4netns'), 'ok');
  assert.equal(
    status({ ...base, which: (p: string) => (p === 'slirp4netns' ? undefined : all(p)) }, 'slirp4netns'),
    'warn',
  );
});

test("as root, a data directory the containers' ids cannot traverse fails, with the fix", () => {
  const modes: Record<string, number> = { '/': 0o40755, '/root': 0o40700, '/root/.local': 0o40755 };
  const root = { ...base, uid: 0, dataDir: '/root/.local/share/secure-run', mode: (p: string) => modes[p] };
  const f = diagnose(root).find((x) => x.check === 'data directory');
  assert.equal(f?.status, 'fail');
  assert.match(f?.detail ?? '', /\/root \(mode 700\)/);
  assert.match(f?.fix ?? '', /\/var\/lib\/secure-run/);
  const ok = { ...root, dataDir: '/var/lib/secure-run', mode: () => 0o40755 };
  assert.equal(diagnose(ok).find((x) => x.check === 'data directory')?.status, 'ok');
});

test("root's data directory defaults to /var/lib/secure-run, others' to their own", async () => {
  const { runnerPaths } = await import('../../../runner/settings.js');
  assert.equal(runnerPaths({}, '/root', 0).dataDir, '/var/lib/secure-run');
  assert.equal(runnerPaths({}, '/home/dev', 1000).dataDir, '/home/dev/.local/share/secure-run');
  assert.equal(runnerPaths({ XDG_DATA_HOME: '/srv/d' }, '/root', 0).dataDir, '/srv/d/secure-run');
  assert.equal(runnerPaths({}, '/root', 0).configDir, '/root/.config/secure-run');
});
