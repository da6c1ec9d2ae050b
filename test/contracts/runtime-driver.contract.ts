import assert from 'node:assert/strict';
import { createReadStream, chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDigest } from '../../oci/digest.js';
import { parseManifest } from '../../oci/manifest.js';
import { hostRlimits, idPlan, initBinary } from '../../runner/host.js';
import { ImageCache } from '../../runner/image-cache.js';
import { ensureVolumeMountpoint, prepareRootfs } from '../../runner/rootfs.js';
import type { RuntimeDriver } from '../../runner/runtime/driver.js';
import { parseImageConfig } from '../../runner/runtime/image-config.js';
import { buildSpec, type RunOptions } from '../../runner/runtime/spec.js';
import { buildImage } from '../helpers/images.js';
import { buildProbe } from '../helpers/probes.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * What every RuntimeDriver must do with a bundle built by buildSpec: run it, give
 * back the exit status, and honour the spec (env, cwd, user, read-only root). Signal
 * forwarding is proven through the CLI (secure-run-signals). Runs as root, so
 * containers get the dedicated id range.
 */
export function runtimeDriverContract(
  name: string,
  make: () => RuntimeDriver,
  traits: { mapsEveryId: boolean } = { mapsEveryId: true },
): void {
  describe(`RuntimeDriver contract: ${name}`, () => {
    const dir = tempDir('portcullis-driver-');
    let rootfs: string;
    let image: ReturnType<typeof parseImageConfig>;
    let n = 0;

    before(async () => {
      chmodSync(dir.path, 0o711);
      const layout = join(dir.path, 'layout');
      await buildImage(layout, 't', { text: 'contract' });
      const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const mDigest = parseDigest(index.manifests[0]?.digest as string);
      const blob = (hex: string) => join(layout, 'blobs', 'sha256', hex);
      const manifest = parseManifest(readFileSync(blob(mDigest.hex)), 'application/vnd.oci.image.manifest.v1+json');
      if (manifest.kind !== 'image') throw new Error('not an image');
      const cache = new ImageCache(join(dir.path, 'cache'));
      for (const d of [manifest.config, ...manifest.layers])
        await cache.putStream(d.digest, d.size, createReadStream(blob(d.digest.hex)));
      image = parseImageConfig(readFileSync(blob(manifest.config.digest.hex)));
      rootfs = await prepareRootfs(join(dir.path, 'data'), cache, mDigest, manifest.layers, image.diffIds, {
        keepSetuid: false,
        idMap: idPlan({ uid: 0, gid: 0 }).idMap,
        maxLayerBytes: 1 << 30,
      });
    });
    after(() => dir.cleanup());

    async function runWith(opts: Partial<RunOptions>, out?: string): Promise<number> {
      const ids = idPlan({ uid: 0, gid: 0 });
      const bundle = join(dir.path, `bundle-${++n}`);
      mkdirSync(bundle, { mode: 0o711 });
      const volumes = out ? [{ source: out, destination: '/out', readOnly: false }] : [];
      if (out) ensureVolumeMountpoint(rootfs, '/out', ids.idMap);
      const spec = buildSpec(
        image,
        { env: [], volumes, tty: false, readOnlyRoot: true, ...opts },
        {
          uidMappings: ids.uidMappings,
          gidMappings: ids.gidMappings,
          rlimits: hostRlimits(),
          initPath: initBinary(),
          rootfsPath: rootfs,
          etcPasswd: undefined,
          etcGroup: undefined,
        },
      );
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
      return make().run({ bundle, id: `contract-${name}-${n}`, stateDir: join(dir.path, 'state'), interactive: false });
    }

    const outDir = () => {
      const out = join(dir.path, `out-${n + 1}`);
      mkdirSync(out, { mode: 0o777 });
      chmodSync(out, 0o777);
      return out;
    };

    test('the exit status comes back', async () => {
      assert.equal(await runWith({ entrypoint: '', command: ['/bin/sh', '-c', 'exit 9'] }), 9);
    });

    test('env, working directory and user are those of the spec; the root is read-only', async () => {
      const out = outDir();
      const code = await runWith(
        {
          entrypoint: '',
          command: [
            '/bin/sh',
            '-c',
            'echo "$FOO $(pwd) $(id -u)" > /out/r; touch /etc/x 2>/dev/null || echo ro >> /out/r',
          ],
          env: ['FOO=bar'],
          workdir: '/srv',
          user: '1234:1234',
        },
        out,
      );
      assert.equal(code, 0);
      assert.equal(readFileSync(join(out, 'r'), 'utf8'), 'bar /srv 1234\nro\n');
      const hostUid = statSync(join(out, 'r')).uid;
      assert.ok(
        hostUid >= 0x70000000 && hostUid < 0x70000000 + 65536,
        'the container user is an id of the dedicated range, never root',
      );
      // bwrap maps only the one requested id, onto the range's first id.
      if (traits.mapsEveryId) assert.equal(hostUid, 0x70000000 + 1234);
    });

    test('the seccomp profile is in force: a denied call fails', async () => {
      const out = outDir();
      const code = await runWith(
        {
          entrypoint: '',
          command: [
            '/bin/sh',
            '-c',
            'grep "^Seccomp:" /proc/self/status | tr -d "\\t " > /out/r; unshare -U true 2>/dev/null && echo allowed >> /out/r || echo denied >> /out/r',
          ],
        },
        out,
      );
      assert.equal(code, 0);
      assert.equal(readFileSync(join(out, 'r'), 'utf8'), 'Seccomp:2\ndenied\n');
    });

    test('no new namespaces from inside: clone with CLONE_NEW* flags is EPERM, clone3 ENOSYS, io_uring EPERM', async () => {
      const out = outDir();
      const probe = await buildProbe('nsprobe', out);
      chmodSync(probe, 0o755);
      const code = await runWith({ entrypoint: '', command: ['/bin/sh', '-c', '/out/nsprobe > /out/r'] }, out);
      assert.equal(code, 0);
      const got = Object.fromEntries(
        readFileSync(join(out, 'r'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => l.split('=') as [string, string]),
      );
      assert.deepEqual(got, {
        'clone(plain)': '0',
        'clone(NEWUSER)': '1',
        'clone(NEWUSER|NEWNET)': '1',
        'clone(NEWNET)': '1',
        'clone(NEWNS)': '1',
        'clone(NEWPID)': '1',
        'clone(NEWUTS)': '1',
        'clone(NEWIPC)': '1',
        'clone(NEWCGROUP)': '1',
        clone3: '38',
        io_uring_setup: '1',
        unshare: '1',
      });
    });
  });
}
