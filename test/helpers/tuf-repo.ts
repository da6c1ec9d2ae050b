import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { canonicalize } from '@tufjs/canonical-json';

/**
 * A TUF repository of the test's own (TUF 1.0: root, timestamp, snapshot and targets
 * roles, ed25519 keys, no consistent snapshots), served over HTTP on 127.0.0.1, whose
 * one target is a Sigstore `trusted_root.json`. `publish` puts a new target out the
 * way a repository does (new targets, snapshot and timestamp versions); `rotateKeys`
 * publishes a new TUF root (signed by the old root key and the new one) with new keys
 * for every role; `down` makes the mirror unreachable.
 */
export interface TufRepo {
  readonly url: string;
  /** The initial TUF root.json (what a client is configured to start from). */
  readonly initialRoot: Buffer;
  publish(trustedRoot: Buffer): void;
  rotateKeys(): void;
  /** Serves this for the next trusted_root.json download instead of the signed target (a mirror gone bad). */
  tamperTarget(bytes: Buffer | undefined): void;
  down(): Promise<void>;
  readonly requests: string[];
}

interface RoleKey {
  readonly id: string;
  readonly json: Record<string, unknown>;
  readonly privateKey: KeyObject;
}

const ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;
const EXPIRES = '2099-01-01T00:00:00Z';

function roleKey(): RoleKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const json = {
    keytype: 'ed25519',
    scheme: 'ed25519',
    keyval: { public: publicKey.export({ type: 'spki', format: 'pem' }) as string },
  };
  return { id: createHash('sha256').update(canonicalize(json)).digest('hex'), json, privateKey };
}

function signed(body: Record<string, unknown>, keys: readonly RoleKey[]): Buffer {
  const data = Buffer.from(canonicalize(body));
  return Buffer.from(
    JSON.stringify({
      signed: body,
      signatures: keys.map((k) => ({ keyid: k.id, sig: sign(null, data, k.privateKey).toString('hex') })),
    }),
  );
}

export async function startTufRepo(firstTarget: Buffer): Promise<TufRepo> {
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  let keys = Object.fromEntries(ROLES.map((r) => [r, roleKey()])) as Record<(typeof ROLES)[number], RoleKey>;
  let rootVersion = 1;
  let version = 0;
  let tampered: Buffer | undefined;
  const rootBody = () => ({
    _type: 'root',
    spec_version: '1.0.31',
    version: rootVersion,
    expires: EXPIRES,
    consistent_snapshot: false,
    keys: Object.fromEntries(ROLES.map((r) => [keys[r].id, keys[r].json])),
    roles: Object.fromEntries(ROLES.map((r) => [r, { keyids: [keys[r].id], threshold: 1 }])),
  });
  const initialRoot = signed(rootBody(), [keys.root]);
  files.set('/1.root.json', initialRoot);
  const publish = (target: Buffer) => {
    version++;
    files.set('/targets/trusted_root.json', target);
    const meta = { length: target.length, hashes: { sha256: createHash('sha256').update(target).digest('hex') } };
    const common = { spec_version: '1.0.31', version, expires: EXPIRES };
    files.set(
      '/targets.json',
      signed({ _type: 'targets', ...common, targets: { 'trusted_root.json': meta } }, [keys.targets]),
    );
    files.set(
      '/snapshot.json',
      signed({ _type: 'snapshot', ...common, meta: { 'targets.json': { version } } }, [keys.snapshot]),
    );
    files.set(
      '/timestamp.json',
      signed({ _type: 'timestamp', ...common, meta: { 'snapshot.json': { version } } }, [keys.timestamp]),
    );
  };
  publish(firstTarget);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    requests.push(path);
    const body = path === '/targets/trusted_root.json' && tampered ? tampered : files.get(path);
    if (req.method !== 'GET' || body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    initialRoot,
    requests,
    publish,
    rotateKeys() {
      const old = keys.root;
      keys = Object.fromEntries(ROLES.map((r) => [r, roleKey()])) as typeof keys;
      rootVersion++;
      files.set(`/${rootVersion}.root.json`, signed(rootBody(), [old, keys.root]));
      publish(files.get('/targets/trusted_root.json') as Buffer);
    },
    tamperTarget(bytes) {
      tampered = bytes;
    },
    down: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
