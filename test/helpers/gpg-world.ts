import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  gpgExport,
  gpgHome,
  gpgKey,
  gpgRevoke,
  gpgSign,
  gpgSigningSubkey,
  simpleSigningPayload,
  type GpgHome,
} from './gpg.js';
import { buildImage } from './images.js';
import { serveDirectory, type StaticServer } from './lookaside.js';
import { run } from './peers.js';
import { startRegistry, type TestRegistry } from './registry.js';
import { tempDir } from './tmp.js';

/**
 * An upstream registry with GPG simple-signing signatures in a lookaside directory
 * served over HTTP, made with gpg and `skopeo --sign-by` (FORMATS §3), one
 * repository per situation:
 *   gpg/signed         signed by the trusted key (skopeo copy --sign-by)
 *   gpg/otherkey       signed by a key the policy does not trust
 *   gpg/expired        signed (in the past) by a trusted key that has expired since
 *   gpg/revoked        signed by a trusted key that was revoked afterwards
 *   gpg/subkey         signed by the signing subkey of a trusted key
 *   gpg/identity       validly signed, but for another repository (skopeo standalone-sign)
 *   gpg/tampered       a valid signature with one byte changed
 *   gpg/many           four bad signatures (another key's, tampered, another digest's, a bad payload), then a valid one
 *   gpg/unsigned       no signature
 * The public keys the policy trusts are in `keys` (binary `gpg --export`; `trusted.asc` armored).
 */
export type GpgCase =
  'signed' | 'otherkey' | 'expired' | 'revoked' | 'subkey' | 'identity' | 'tampered' | 'many' | 'unsigned';

export interface GpgWorld {
  readonly registry: TestRegistry;
  readonly lookaside: StaticServer;
  readonly lookasideDir: string;
  readonly keys: Record<
    'trusted.gpg' | 'trusted.asc' | 'expired.gpg' | 'revoked.gpg' | 'subkey.gpg' | 'other.gpg',
    Buffer
  >;
  readonly digests: Record<GpgCase, string>;
  readonly home: GpgHome;
  readonly fingerprints: Record<'trusted' | 'other', string>;
  stop(): Promise<void>;
}

const CASES: readonly GpgCase[] = [
  'signed',
  'otherkey',
  'expired',
  'revoked',
  'subkey',
  'identity',
  'tampered',
  'many',
  'unsigned',
];

export async function buildGpgWorld(): Promise<GpgWorld> {
  const dir = tempDir('portcullis-gpg-world-');
  const registry = await startRegistry();
  try {
    const home = gpgHome(dir.path);
    const trusted = await gpgKey(home, 'Trusted Signer', { algo: 'rsa3072' });
    const other = await gpgKey(home, 'Other Signer');
    // Created in 2020, valid for a day: expired long before the test runs.
    const expired = await gpgKey(home, 'Expired Signer', { faked: '20200101T120000', expire: '1d' });
    const revoked = await gpgKey(home, 'Revoked Signer');
    const primary = await gpgKey(home, 'Subkey Owner', { usage: 'cert' });
    const subkey = await gpgSigningSubkey(home, primary);

    const layout = join(dir.path, 'layout');
    const lookasideDir = join(dir.path, 'lookaside');
    mkdirSync(lookasideDir);
    const registriesD = join(dir.path, 'registries.d');
    mkdirSync(registriesD);
    writeFileSync(
      join(registriesD, 'default.yaml'),
      `docker:\n  ${registry.host}:\n    lookaside-staging: file://${lookasideDir}\n`,
    );
    const digests = {} as Record<GpgCase, string>;
    for (const c of CASES) {
      await buildImage(layout, c, { text: `gpg-${c}` });
      const digestFile = join(dir.path, `digest-${c}`);
      const signBy =
        c === 'signed' || c === 'many' || c === 'tampered'
          ? trusted
          : c === 'otherkey'
            ? other
            : c === 'revoked'
              ? revoked
              : undefined;
      const args = [
        '--insecure-policy',
        '--registries.d',
        registriesD,
        'copy',
        '--dest-tls-verify=false',
        '--digestfile',
        digestFile,
        ...(signBy ? ['--sign-by', signBy] : []),
        `oci:${layout}:${c}`,
        `docker://${registry.host}/gpg/${c}:1`,
      ];
      await run('skopeo', args, { env: home.env });
      digests[c] = readFileSync(digestFile, 'utf8').trim();
    }
    const sigDir = (c: GpgCase) => join(lookasideDir, 'gpg', `${c}@${digests[c].replace(':', '=')}`);
    const place = (c: GpgCase, n: number, blob: Buffer) => {
      mkdirSync(sigDir(c), { recursive: true });
      writeFileSync(join(sigDir(c), `signature-${n}`), blob);
    };
    const ref = (c: GpgCase) => `${registry.host}/gpg/${c}:1`;
    // gpg refuses to sign with an expired key at today's date: sign while it was valid.
    place(
      'expired',
      1,
      await gpgSign(home, expired, simpleSigningPayload(digests.expired, ref('expired')), '20200101T130000'),
    );
    place('subkey', 1, await gpgSign(home, `${subkey}!`, simpleSigningPayload(digests.subkey, ref('subkey'))));
    // Valid signature, wrong identity: skopeo's own standalone signer.
    const manifest = join(dir.path, 'identity-manifest.json');
    const res = await fetch(`${registry.url}/v2/gpg/identity/manifests/${digests.identity}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    writeFileSync(manifest, Buffer.from(await res.arrayBuffer()));
    const sig = join(dir.path, 'identity.sig');
    await run(
      'skopeo',
      ['standalone-sign', manifest, `${registry.host}/gpg/somewhere-else:1`, trusted, '--output', sig],
      { env: home.env },
    );
    place('identity', 1, readFileSync(sig));
    const tampered = readFileSync(join(sigDir('tampered'), 'signature-1'));
    tampered[tampered.length - 10] = (tampered[tampered.length - 10] ?? 0) ^ 0x01;
    writeFileSync(join(sigDir('tampered'), 'signature-1'), tampered);
    // many: signature-1 (valid) moves to 5; before it, another key's, a tampered one, another digest's, a bad payload.
    copyFileSync(join(sigDir('many'), 'signature-1'), join(sigDir('many'), 'signature-5'));
    place('many', 1, await gpgSign(home, other, simpleSigningPayload(digests.many, ref('many'))));
    place('many', 2, tampered);
    place('many', 3, await gpgSign(home, trusted, simpleSigningPayload(digests.signed, ref('many'))));
    place('many', 4, await gpgSign(home, trusted, Buffer.from('{"critical":{},"optional":{}}')));

    const keys: Record<string, Buffer> = {
      'trusted.gpg': await gpgExport(home, trusted),
      'trusted.asc': await gpgExport(home, trusted, true),
      'expired.gpg': await gpgExport(home, expired),
      'subkey.gpg': await gpgExport(home, primary),
      'other.gpg': await gpgExport(home, other),
      'revoked.gpg': Buffer.alloc(0),
    };
    await gpgRevoke(home, revoked);
    keys['revoked.gpg'] = await gpgExport(home, revoked);
    const lookaside = await serveDirectory(lookasideDir);
    return {
      registry,
      lookaside,
      lookasideDir,
      keys: keys as GpgWorld['keys'],
      digests,
      home,
      fingerprints: { trusted, other },
      async stop() {
        await lookaside.stop();
        await registry.stop();
        dir.cleanup();
      },
    };
  } catch (err) {
    await registry.stop();
    dir.cleanup();
    throw err;
  }
}
