import { formatDiagnostic, type Diagnostic } from './diagnostics.js';

export type PolicyErrorCode = 'POLICY_INVALID' | 'CONFIG_INVALID' | 'FILE_UNREADABLE';

/** A policy or config file that cannot be used; `diagnostics` lists every problem found. */
export class LoadError extends Error {
  readonly code: PolicyErrorCode;
  readonly diagnostics: readonly Diagnostic[];
  constructor(code: PolicyErrorCode, diagnostics: readonly Diagnostic[], options?: { cause?: unknown }) {
    const sorted = [...diagnostics].sort(
      (a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column,
    );
    super(sorted.map(formatDiagnostic).join('\n') || code, options);
    this.name = 'LoadError';
    this.code = code;
    this.diagnostics = sorted;
  }
}
