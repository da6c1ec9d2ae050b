import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { RunnerError } from '../errors.js';
import { findProgram } from '../unpack/confined.js';
import { holderReady } from './holder.js';

/**
 * `--network none`: the container's own network namespace with only loopback.
 * `--network slirp`: a user-mode network stack (slirp4netns, as rootless podman
 * uses) serving a network namespace secure-run holds; the container shares it and
 * reaches out through 10.0.2.2 (gateway), 10.0.2.3 (DNS) and 10.0.2.100 (itself).
 * The host's loopback is closed to it unless asked for with
 * `slirp:allow_host_loopback=true` (then 10.0.2.2 is the host's 127.0.0.1).
 */
export type Network = { readonly mode: 'none' } | { readonly mode: 'slirp'; readonly allowHostLoopback: boolean };

export function parseNetwork(text: string): Network {
  if (text === 'none') return { mode: 'none' };
  const colon = text.indexOf(':');
  const name = colon < 0 ? text : text.slice(0, colon);
  const options = colon < 0 ? '' : text.slice(colon + 1);
  if (name !== 'slirp' && name !== 'slirp4netns')
    throw new RunnerError(
      'IMAGE_INVALID',
      `--network must be none or slirp[:allow_host_loopback=true]: ${JSON.stringify(text)}`,
    );
  let allowHostLoopback = false;
  for (const opt of options === '' ? [] : options.split(',')) {
    if (opt === 'allow_host_loopback=true') allowHostLoopback = true;
    else if (opt === 'allow_host_loopback=false') allowHostLoopback = false;
    else
      throw new RunnerError(
        'IMAGE_INVALID',
        `unknown slirp option ${JSON.stringify(opt)} (known: allow_host_loopback=true|false)`,
      );
  }
  return { mode: 'slirp', allowHostLoopback };
}

/** What the container sees in /etc with a slirp network. */
export const SLIRP_RESOLV_CONF = 'nameserver 10.0.2.3\n';
export function slirpHosts(hostname: string): string {
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.100\t${hostname}\n`;
}

export interface Handle {
  close(): void;
}

/** Root: a network namespace of its own, held open by a process; its /proc path is what runtimes join. */
export async function holdNetworkNamespace(): Promise<Handle & { pid: number; path: string }> {
  const [setpriv, unshare] = [findProgram('setpriv'), findProgram('unshare')];
  if (!setpriv || !unshare)
    throw new RunnerError('IMAGE_INVALID', 'unshare and setpriv are needed: apt-get install util-linux');
  const holder = spawn(setpriv, ['--pdeathsig', 'KILL', '--', unshare, '--net', '--', 'sleep', '86400'], {
    stdio: 'ignore',
  });
  try {
    const pid = await holderReady(holder, 'net');
    return { pid, path: `/proc/${pid}/ns/net`, close: () => holder.kill('SIGKILL') };
  } catch (err) {
    holder.kill('SIGKILL');
    throw err;
  }
}

/**
 * Starts slirp4netns for the network namespace of `pid` (entering `userns` first when
 * the namespace belongs to a user's user namespace) and waits until the interface is
 * up. It runs sandboxed (its own mount namespace, seccomp) and exits when secure-run
 * does (its exit descriptor closes) or on close().
 */
export async function startSlirp(
  target: { pid: number; userns?: string | undefined },
  net: Extract<Network, { mode: 'slirp' }>,
): Promise<Handle> {
  const slirp = findProgram('slirp4netns', `${process.env.PATH ?? ''}:/usr/bin`);
  const setpriv = findProgram('setpriv');
  if (!slirp) throw new RunnerError('IMAGE_INVALID', '--network slirp needs slirp4netns: apt-get install slirp4netns');
  if (!setpriv) throw new RunnerError('IMAGE_INVALID', 'setpriv is needed: apt-get install util-linux');
  const args = [
    '--configure',
    '--mtu=65520',
    ...(net.allowHostLoopback ? [] : ['--disable-host-loopback']),
    '--enable-sandbox',
    '--enable-seccomp',
    '--ready-fd=3',
    '--exit-fd=4',
    ...(target.userns ? [`--userns-path=${target.userns}`] : []),
    String(target.pid),
    'tap0',
  ];
  const child: ChildProcess = spawn(setpriv, ['--pdeathsig', 'KILL', '--', slirp, ...args], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
  });
  const exitPipe = child.stdio[4] as Writable;
  exitPipe.on('error', () => undefined);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2048)));
  const close = () => {
    exitPipe.destroy();
    child.kill('SIGKILL');
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RunnerError('IMAGE_INVALID', 'slirp4netns did not bring the network up within 10 s')),
        10_000,
      );
      (child.stdio[3] as Readable).once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        const tun = /tun|TUNSETIFF|Permission denied/i.test(err)
          ? ' (an unprivileged user needs read-write access to /dev/net/tun; see `secure-run doctor`)'
          : '';
        reject(
          new RunnerError('IMAGE_INVALID', `slirp4netns failed (exit ${code}): ${err.trim().slice(0, 400)}${tun}`),
        );
      });
    });
  } catch (e) {
    close();
    throw e;
  }
  return { close };
}
