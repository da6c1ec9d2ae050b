import type { Hash } from 'node:crypto';
import type { Node } from 'yaml';
import type { YamlSource } from './yaml-source.js';

/**
 * The key files a policy names, read once each: their bytes go into the policy's
 * digest (a changed key is a changed policy), and a file that cannot be read is a
 * diagnostic at the place that names it.
 */
export class KeyFiles {
  readonly #cache = new Map<string, Buffer | undefined>();

  constructor(
    private readonly src: YamlSource,
    private readonly hash: Hash,
    private readonly readKey: (path: string) => Buffer,
  ) {}

  /** Every key file path read (as the policy names them). */
  paths(): string[] {
    return [...this.#cache.keys()];
  }

  read(node: Node | null | undefined, path: string): Buffer | undefined {
    if (this.#cache.has(path)) return this.#cache.get(path);
    let bytes: Buffer | undefined;
    try {
      bytes = this.readKey(path);
      this.hash.update(`\0${path}\0`).update(bytes);
    } catch (err) {
      this.src.report(
        node,
        `cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        'key paths are relative to the policy file',
      );
    }
    this.#cache.set(path, bytes);
    return bytes;
  }
}
