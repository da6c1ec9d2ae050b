import { LoadError } from '../policies/errors.js';
import { formatDiagnostic } from '../policies/diagnostics.js';
import { loadPolicyFile } from '../policies/loader.js';

/** Lints each file; prints every diagnostic. Returns the exit code: 0 clean, 1 problems. */
export async function lintPolicyFiles(files: readonly string[], print: (line: string) => void): Promise<number> {
  let problems = 0;
  for (const file of files) {
    try {
      const p = await loadPolicyFile(file);
      print(
        `${file}: ok (${p.format === 'containers-policy.json' ? 'containers-policy.json, ' : ''}${p.rules.length} rules, policy ${p.digest.text})`,
      );
      for (const note of p.notes ?? []) print(`${file}: note: ${note}`);
      for (const w of p.warnings ?? []) print(formatDiagnostic({ ...w, message: `warning: ${w.message}` }));
    } catch (err) {
      if (!(err instanceof LoadError)) throw err;
      for (const d of err.diagnostics) print(formatDiagnostic(d));
      problems += err.diagnostics.length;
    }
  }
  return problems === 0 ? 0 : 1;
}
