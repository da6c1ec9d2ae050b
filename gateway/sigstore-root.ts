import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { initTUF } from '@sigstore/tuf';
import type { Logger } from 'pino';
import { parseStrictJson } from '../oci/strict-json.js';
import type { KeylessTrust } from '../policies/model.js';
import { loadTrustedRoot } from '../policies/verifiers/cosign-keyless.js';

/**
 * The Sigstore trusted root, refreshed from a TUF repository (@sigstore/tuf verifies
 * the TUF metadata chain from the configured TUF root: signatures, thresholds,
 * versions, expiry, the target's length and hash). A fetched trusted_root.json is
 * checked as a root file is (loadTrustedRoot) and kept as the last good root in the
 * data directory; while the mirror is down, or serves something unusable, the last
 * good root goes on deciding. Nothing here is asked while a pull waits: refreshes run
 * on a timer.
 */
export interface CurrentRoot {
  readonly trust: KeylessTrust;
  /** sha256 of the trusted_root.json bytes. */
  readonly digest: string;
}

export interface SigstoreRootOptions {
  readonly mirror: string;
  readonly root?: string | undefined;
  readonly refreshSeconds: number;
  readonly dataDir: string;
  readonly logger: Logger;
  /** Called after a new root is taken (the policy is compiled again with it). */
  readonly onChange: (root: CurrentRoot) => void;
}

const TIMEOUT_MS = 10_000;
const MAX_ROOT_BYTES = 1024 * 1024;

export class SigstoreRoot {
  #current: CurrentRoot | undefined;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<boolean> | undefined;
  readonly #dir: string;

  private constructor(private readonly options: SigstoreRootOptions) {
    this.#dir = join(options.dataDir, 'sigstore');
  }

  /** Starts from the last good root (if any), then asks the mirror once; refreshes on a timer after that. */
  static async start(options: SigstoreRootOptions): Promise<SigstoreRoot> {
    const r = new SigstoreRoot(options);
    mkdirSync(r.#dir, { recursive: true, mode: 0o700 });
    r.#current = r.#lastGood();
    await r.refresh();
    r.#timer = setInterval(() => void r.refresh(), options.refreshSeconds * 1000);
    r.#timer.unref();
    return r;
  }

  current(): CurrentRoot | undefined {
    return this.#current;
  }

  /** Asks the mirror for the trusted root; true when a new one was taken. */
  refresh(): Promise<boolean> {
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  async #refresh(): Promise<boolean> {
    const { logger, mirror } = this.options;
    let text: string;
    try {
      const tuf = await initTUF({
        mirrorURL: mirror,
        ...(this.options.root ? { rootPath: this.options.root } : {}),
        cachePath: join(this.#dir, 'tuf'),
        retry: false,
        timeout: TIMEOUT_MS,
      });
      text = await tuf.getTarget('trusted_root.json');
    } catch (err) {
      const e = err as { code?: string; message?: string; cause?: { message?: string } };
      logger.warn(
        {
          event: 'sigstore.root_refresh_failed',
          mirror,
          code: e.code,
          cause: e.cause?.message,
          keeping: this.#current?.digest ?? 'the shipped public-good root',
        },
        `the Sigstore TUF mirror did not give a verified trusted root: ${e.message ?? String(err)}`,
      );
      return false;
    }
    const taken = this.#take(Buffer.from(text, 'utf8'), `trusted_root.json from ${mirror}`);
    if (typeof taken === 'string') {
      logger.error({ event: 'sigstore.root_refresh_failed', mirror, keeping: this.#current?.digest }, taken);
      return false;
    }
    if (taken.digest === this.#current?.digest) return false;
    const previous = this.#current?.digest;
    this.#current = taken;
    this.#keep(Buffer.from(text, 'utf8'));
    logger.info(
      { event: 'sigstore.root_updated', mirror, digest: taken.digest, previous },
      'Sigstore trusted root updated',
    );
    this.options.onChange(taken);
    return true;
  }

  #take(bytes: Buffer, source: string): CurrentRoot | string {
    if (bytes.length > MAX_ROOT_BYTES) return `${source} is larger than ${MAX_ROOT_BYTES} bytes`;
    let doc: unknown;
    try {
      doc = parseStrictJson(bytes, { maxDepth: 16 });
    } catch (err) {
      return `${source} is not JSON: ${(err as Error).message}`;
    }
    const trust = loadTrustedRoot(doc, source);
    if (typeof trust === 'string') return `${source} is not a usable trusted root: ${trust}`;
    return { trust, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
  }

  #lastGood(): CurrentRoot | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(this.#dir, 'trusted_root.json'));
    } catch {
      return undefined;
    }
    const taken = this.#take(bytes, 'the last good Sigstore trusted root');
    if (typeof taken === 'string') {
      this.options.logger.warn({ event: 'sigstore.root_unusable' }, taken);
      return undefined;
    }
    return taken;
  }

  /** Written whole, then renamed into place: a crash leaves the old root or the new one. */
  #keep(bytes: Buffer): void {
    const tmp = join(this.#dir, `trusted_root.json.${process.pid}.tmp`);
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.#dir, 'trusted_root.json'));
  }
}
