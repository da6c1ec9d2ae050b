import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { RunnerError } from './errors.js';
import { hostPlatform, parsePlatform } from './platform.js';
import { hostRlimits, idPlan, initBinary } from './host.js';
import { ImageCache } from './image-cache.js';
import { healLayers, pullImage, type PullPolicy } from './pull.js';
import { sweepLeftovers } from './leftovers.js';
import { ownedName } from './owner.js';
import { UnpackError } from './unpack/errors.js';
import { ensureFileMountpoint, ensureVolumeMountpoint, prepareRootfs, privateRootfs } from './rootfs.js';
import { parseImageConfig } from './runtime/image-config.js';
import { ociRuntime } from './runtime/oci-runtime.js';
import { openUserNamespace } from './runtime/userns.js';
import { holdNetworkNamespace, SLIRP_RESOLV_CONF, slirpHosts, startSlirp, type Network } from './runtime/network.js';
import { bwrapRuntime } from './runtime/bwrap.js';
import { buildSpec, resolveUser, type Volume } from './runtime/spec.js';
import { assertPrivate, blockedAncestor, readTrust, ROOT_DATA_DIR, type RunnerPaths } from './settings.js';
import { removeTree } from './rootfs.js';

/**
 * One `secure-run IMAGE [COMMAND…]`: pull (or take from the cache) and check the
 * gateway's attestation for the exact digest, unpack in confinement, build the spec,
 * run it, and hand back the container's exit status. Any refusal happens before
 * anything is unpacked or launched.
 */
export interface LaunchOptions {
  readonly image: string;
  readonly command: readonly string[];
  readonly env: readonly string[];
  readonly envFiles: readonly string[];
  readonly volumes: readonly string[];
  readonly workdir?: string | undefined;
  readonly user?: string | undefined;
  readonly entrypoint?: string | undefined;
  readonly interactive: boolean;
  readonly tty: boolean;
  readonly platform?: string | undefined;
  readonly pull: PullPolicy;
  readonly runtime: 'crun' | 'runc' | 'bwrap';
  readonly readOnly: boolean;
  readonly maxAgeMs: number;
  readonly keepSetuid: boolean;
  readonly maxLayerBytes: number;
  /** auto: the user's subordinate ids when there are any; single: the user's own id only. */
  readonly userns: 'auto' | 'single';
  readonly network: Network;
}

const HOSTNAME = 'secure-run';

export async function launch(
  paths: RunnerPaths,
  opts: LaunchOptions,
  hostEnv: NodeJS.ProcessEnv,
  warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  const trust = readTrust(paths);
  const env = [...opts.envFiles.flatMap(readEnvFile), ...opts.env].map((e) => resolveEnv(e, hostEnv));
  const volumes = opts.volumes.map(parseVolume);
  const ids = idPlan({
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    user: loginName(),
    userns: opts.userns,
  });
  const driver = opts.runtime === 'bwrap' ? bwrapRuntime() : ociRuntime(opts.runtime);
  const initPath = initBinary();
  mkdirSync(paths.dataDir, { recursive: true, mode: 0o711 });
  assertPrivate(paths.dataDir);
  if (ids.mode === 'root') {
    const blocked = blockedAncestor(paths.dataDir, (p) => {
      try {
        return statSync(p).mode;
      } catch {
        return undefined;
      }
    });
    if (blocked !== undefined) {
      throw new RunnerError(
        'DATA_DIR_UNREACHABLE',
        `${blocked} lets no other user through (mode ${(statSync(blocked).mode & 0o777).toString(8)}), so the container's ids cannot reach ${paths.dataDir}: unset XDG_DATA_HOME (root's default is ${ROOT_DATA_DIR}) or chmod o+x ${blocked}`,
      );
    }
  }
  const cache = new ImageCache(join(paths.dataDir, 'images'));
  const slirp = opts.network.mode === 'slirp' ? opts.network : undefined;
  // The user namespace is made while the image is checked (it takes as long as the
  // check on a warm launch); nothing enters it before the check has passed.
  const opening = ids.mode === 'root' ? undefined : openUserNamespace({ subids: ids.subids, net: slirp !== undefined });
  opening?.catch(() => undefined);
  const pullOptions = {
    platform: opts.platform ? parsePlatform(opts.platform) : hostPlatform(),
    maxAgeMs: opts.maxAgeMs,
    pull: opts.pull,
    progress: process.stderr.isTTY ? progressBar() : undefined,
    warn,
  };
  const { pulled, config } = await pullImage(trust, cache, opts.image, pullOptions)
    .then((p) => ({ pulled: p, config: parseImageConfig(p.config) }))
    .catch(async (err: unknown) => {
      await opening?.then(
        (ns) => ns.close(),
        () => undefined,
      );
      throw err;
    });
  // Named for this process: a later run removes it if this one is killed before it can.
  const id = ownedName('secure-run-', randomBytes(6).toString('hex'));
  const bundle = join(paths.dataDir, 'containers', id);
  const handles: { close(): void }[] = [];
  const userns = await opening;
  if (userns) handles.push(userns);
  // What killed runs left behind (bundles with their -e values, runtime state, half-made trees).
  await sweepLeftovers(paths.dataDir, userns);
  mkdirSync(bundle, { recursive: true, mode: 0o711 });
  try {
    const idKey = ids.subids ? `u${ids.subids.uids.start}g${ids.subids.gids.start}` : undefined;
    const rootfsOptions = {
      keepSetuid: opts.keepSetuid,
      idMap: ids.idMap,
      maxLayerBytes: opts.maxLayerBytes,
      userns,
      idKey,
    };
    // A writable root is a private copy: the cached tree stays exactly what was attested.
    const unpack = () =>
      opts.readOnly
        ? prepareRootfs(paths.dataDir, cache, pulled.manifestDigest, pulled.layers, config.diffIds, rootfsOptions)
        : privateRootfs(bundle, cache, pulled.layers, config.diffIds, rootfsOptions);
    let rootfs: string;
    try {
      rootfs = await unpack();
    } catch (err) {
      // A cached layer that no longer matches its digest (a disk fault, a stray write) is
      // replaced and the unpack tried once more; sound layers mean the image itself is bad.
      if (!(err instanceof UnpackError)) throw err;
      if (!(await healLayers(trust, cache, opts.image, pulled.manifest, { ...pullOptions, warn }))) throw err;
      if (!opts.readOnly) await removeTree(join(bundle, 'rootfs'), userns);
      rootfs = await unpack();
    }
    // Made by the user outside the namespace, where they already belong to the container's root.
    const ownerMap = ids.mode === 'root' ? ids.idMap : undefined;
    for (const v of volumes) ensureVolumeMountpoint(rootfs, v.destination, ownerMap);
    const files: { source: string; destination: string }[] = [];
    if (slirp) {
      for (const [name, text] of [
        ['resolv.conf', SLIRP_RESOLV_CONF],
        ['hosts', slirpHosts(HOSTNAME)],
      ] as const) {
        writeFileSync(join(bundle, name), text, { mode: 0o644 });
        if (ensureFileMountpoint(rootfs, `/etc/${name}`, ownerMap))
          files.push({ source: join(bundle, name), destination: `/etc/${name}` });
        else warn(`secure-run: warning: the image's /etc/${name} is not a regular file; leaving it as it is`);
      }
    }
    const etcPasswd = readContainerFile(rootfs, ['etc', 'passwd']);
    const etcGroup = readContainerFile(rootfs, ['etc', 'group']);
    let user = opts.user ?? config.user;
    if (ids.mode === 'single' && user !== '' && resolveUser(user, { etcPasswd, etcGroup }).uid !== 0) {
      warn(
        `secure-run: warning: ${opts.image} runs as ${JSON.stringify(user)}, but without a subordinate id range (/etc/subuid, /etc/subgid) this container has only one id; running it as the container's root (your own unprivileged user on the host)`,
      );
      user = '0:0';
    }
    const spec = buildSpec(
      config,
      {
        command: opts.command.length ? opts.command : undefined,
        entrypoint: opts.entrypoint,
        env,
        workdir: opts.workdir,
        user,
        volumes,
        tty: opts.tty,
        readOnlyRoot: opts.readOnly,
        hostname: HOSTNAME,
        network: slirp ? 'joined' : 'private',
        files,
      },
      {
        uidMappings: ids.uidMappings,
        gidMappings: ids.gidMappings,
        rlimits: hostRlimits(),
        initPath,
        rootfsPath: rootfs,
        etcPasswd,
        etcGroup,
      },
    );
    // The spec holds the -e values: readable by its owner only (the runtime runs as the same user).
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
    let netns: string | undefined;
    if (slirp) {
      // Root: a network namespace of its own for the runtime to start in; a user's is part of their namespace.
      const held = userns ? undefined : await holdNetworkNamespace();
      if (held) handles.push(held);
      netns = held?.path;
      handles.push(
        await startSlirp(
          {
            pid: userns?.pid ?? (held as { pid: number }).pid,
            userns: userns ? `/proc/${userns.pid}/ns/user` : undefined,
          },
          slirp,
        ),
      );
    }
    return await driver.run({
      bundle,
      id,
      stateDir: join(paths.dataDir, 'state'),
      interactive: opts.interactive,
      userns,
      netns,
    });
  } finally {
    await removeTree(bundle, userns);
    for (const h of handles.reverse()) h.close();
  }
}

/** `-v SRC:DST[:ro|rw]`, SRC an existing absolute host path. */
export function parseVolume(text: string): Volume {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3)
    throw new RunnerError('IMAGE_INVALID', `volume must be SRC:DST[:ro]: ${JSON.stringify(text)}`);
  const [source = '', destination = '', mode = 'rw'] = parts;
  if (!isAbsolute(source))
    throw new RunnerError('IMAGE_INVALID', `volume source must be an absolute host path: ${JSON.stringify(source)}`);
  if (mode !== 'ro' && mode !== 'rw')
    throw new RunnerError('IMAGE_INVALID', `volume mode must be ro or rw: ${JSON.stringify(mode)}`);
  try {
    statSync(source);
  } catch {
    throw new RunnerError('IMAGE_INVALID', `volume source does not exist: ${source}`);
  }
  return { source, destination, readOnly: mode === 'ro' };
}

/** `KEY=VALUE` as given; a bare `KEY` takes the value from secure-run's environment (docker -e KEY). */
export function resolveEnv(entry: string, hostEnv: NodeJS.ProcessEnv): string {
  if (entry.includes('=')) return entry;
  const v = hostEnv[entry];
  return v === undefined ? `${entry}=` : `${entry}=${v}`;
}

export function readEnvFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RunnerError(
      'OPTION_INVALID',
      `--env-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/**
 * Reads a small file of the unpacked image without following any symlink: an image
 * whose /etc/passwd points at a host file must not make us read the host file.
 */
export function readContainerFile(rootfs: string, parts: readonly string[]): string | undefined {
  let path = rootfs;
  for (const p of parts.slice(0, -1)) {
    path = join(path, p);
    try {
      if (!lstatSync(path).isDirectory()) return undefined;
    } catch {
      return undefined;
    }
  }
  let fd: number;
  try {
    fd = openSync(join(path, parts[parts.length - 1] as string), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > 1024 * 1024) return undefined;
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** docker pull-style progress on a terminal: one line per blob, rewritten in place. */
function progressBar(): (e: { layer: number; of: number; bytes: number; size: number }) => void {
  let last = 0;
  return (e) => {
    const now = Date.now();
    if (now - last < 100 && e.bytes < e.size) return;
    last = now;
    const pct = e.size ? Math.floor((e.bytes / e.size) * 100) : 100;
    const width = 30;
    const bar = '='.repeat(Math.floor((pct / 100) * width)).padEnd(width, ' ');
    process.stderr.write(
      `\r${e.layer}/${e.of} [${bar}] ${pct}% ${(e.bytes / 1048576).toFixed(1)}/${(e.size / 1048576).toFixed(1)} MiB${e.bytes >= e.size ? '\n' : ''}`,
    );
  };
}

function loginName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}
