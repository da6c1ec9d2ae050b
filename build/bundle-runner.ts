import { chmodSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * secure-run starts once per container, so its start-up is part of every launch.
 * Node's ES module loader pays per file (about 0.7 ms each here), and the warm
 * path touches some forty of them: the compiled modules are bundled into
 * dist/bin/secure-run.js and a few shared chunks (7 files on a warm launch), with
 * the parts a warm launch never reaches (doctor, trust, the network client) in
 * chunks loaded on demand. The extraction child is a bundle of its own, next to
 * it, where the runner looks for it.
 *
 * Input is tsc's output, so the bundle runs exactly the code the tests compile.
 */
const dist = fileURLToPath(new URL('../', import.meta.url));
const outdir = `${dist}bin`;

rmSync(outdir, { recursive: true, force: true });
const common = {
  outdir,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Dependencies written as CommonJS call require() for Node's own modules.
  banner: {
    js: "import { createRequire as __secureRunRequire } from 'node:module'; const require = __secureRunRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
} as const;
// Two builds, so that neither entry loads chunks shared with the other.
const results = [
  await build({ ...common, entryPoints: { 'secure-run': `${dist}cli/secure-run.js` }, splitting: true }),
  await build({ ...common, entryPoints: { 'extract-child': `${dist}runner/unpack/extract-child.js` } }),
];
const problems = results.reduce((n, r) => n + r.errors.length + r.warnings.length, 0);
if (problems > 0) throw new Error(`bundling secure-run: ${problems} errors and warnings`);
chmodSync(`${outdir}/secure-run.js`, 0o755);
