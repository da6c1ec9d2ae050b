import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { peer, run } from './peers.js';

/**
 * Real OpenPGP keys and simple-signing signatures made with gpg (and skopeo), in a
 * GNUPGHOME of the test's own.
 */
export interface GpgHome {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
}

export function gpgHome(parent: string): GpgHome {
  peer('gpg');
  const dir = join(parent, 'gnupg');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o700);
  return { dir, env: { ...process.env, GNUPGHOME: dir } };
}

const BATCH = ['--batch', '--pinentry-mode', 'loopback', '--passphrase', ''];

/** A new key; `faked` (YYYYMMDDThhmmss) makes gpg believe it is that time (for keys that expired since). */
export async function gpgKey(
  home: GpgHome,
  name: string,
  opts: { algo?: 'rsa3072' | 'ed25519'; usage?: 'sign' | 'cert'; expire?: string; faked?: string } = {},
): Promise<string> {
  const time = opts.faked ? ['--faked-system-time', `${opts.faked}!`] : [];
  await run(
    'gpg',
    [
      ...BATCH,
      ...time,
      '--quick-gen-key',
      `${name} <${name.toLowerCase().replace(/\W+/g, '-')}@example.invalid>`,
      opts.algo ?? 'ed25519',
      opts.usage ?? 'sign',
      opts.expire ?? 'never',
    ],
    { env: home.env },
  );
  const out = await run('gpg', ['--batch', '--with-colons', '--list-keys', `${name} <`], { env: home.env });
  const fpr = out.stdout
    .split('\n')
    .find((l) => l.startsWith('fpr:'))
    ?.split(':')[9];
  if (!fpr) throw new Error(`no fingerprint for ${name}`);
  return fpr;
}

/** Adds a signing subkey to a key; returns the subkey's fingerprint. */
export async function gpgSigningSubkey(home: GpgHome, fpr: string): Promise<string> {
  await run('gpg', [...BATCH, '--quick-add-key', fpr, 'ed25519', 'sign', 'never'], { env: home.env });
  const out = await run('gpg', ['--batch', '--with-colons', '--list-keys', fpr], { env: home.env });
  const fprs = out.stdout
    .split('\n')
    .filter((l) => l.startsWith('fpr:'))
    .map((l) => l.split(':')[9]);
  const sub = fprs[fprs.length - 1];
  if (!sub || sub === fpr) throw new Error('no subkey');
  return sub;
}

export async function gpgExport(home: GpgHome, fpr: string, armor = false): Promise<Buffer> {
  const file = join(home.dir, `export-${fpr}-${armor ? 'asc' : 'gpg'}`);
  await run('gpg', ['--batch', '--yes', ...(armor ? ['--armor'] : []), '--output', file, '--export', fpr], {
    env: home.env,
  });
  return readFileSync(file);
}

/** Revokes a key with the revocation certificate gpg made when it created the key. */
export async function gpgRevoke(home: GpgHome, fpr: string): Promise<void> {
  const cert = readFileSync(join(home.dir, 'openpgp-revocs.d', `${fpr}.rev`), 'utf8').replace(
    ':-----BEGIN',
    '-----BEGIN',
  );
  const file = join(home.dir, `${fpr}.rev.asc`);
  writeFileSync(file, cert);
  await run('gpg', ['--batch', '--import', file], { env: home.env });
}

/** `gpg --sign` (a binary signed message, compressed), as containers/image expects. */
export async function gpgSign(
  home: GpgHome,
  fpr: string,
  payload: Buffer,
  faked?: string,
  extra: readonly string[] = [],
): Promise<Buffer> {
  const dir = join(home.dir, 'sign');
  mkdirSync(dir, { recursive: true });
  const input = join(dir, `payload-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  writeFileSync(input, payload);
  const time = faked ? ['--faked-system-time', `${faked}!`] : [];
  await run('gpg', [...BATCH, ...time, ...extra, '--local-user', fpr, '--output', `${input}.sig`, '--sign', input], {
    env: home.env,
  });
  return readFileSync(`${input}.sig`);
}

/** The simple-signing payload skopeo would sign. */
export function simpleSigningPayload(digest: string, reference: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': reference },
        image: { 'docker-manifest-digest': digest },
        type: 'atomic container signature',
      },
      optional: { creator: 'portcullis tests' },
    }),
  );
}
