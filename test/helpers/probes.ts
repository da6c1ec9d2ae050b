import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './peers.js';

/** Small static C programs run inside containers (test/fixtures/probes), built with the real gcc. */
export async function buildProbe(name: string, outDir: string): Promise<string> {
  const source = fileURLToPath(new URL(`../../../test/fixtures/probes/${name}.c`, import.meta.url));
  const out = join(outDir, name);
  await run('gcc', ['-static', '-O2', '-o', out, source]);
  return out;
}
