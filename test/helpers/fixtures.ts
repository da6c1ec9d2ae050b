import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Files under test/fixtures (tests run from dist/, fixtures stay in the source tree). */
export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../../../test/fixtures/${name}`, import.meta.url));
}

export function fixture(name: string): Buffer {
  return readFileSync(fixturePath(name));
}
