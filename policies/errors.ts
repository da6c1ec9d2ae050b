import { formatDiagnostic, type Diagnostic } from './diagnostics.js';

export type PolicyErrorCode = 'POLICY_INVALID' | 'CONFIG_INVALID' | 'FILE_UNREADABLE';

/** A policy or config file that cannot be used; `diagnostics` lists every problem found. */
export class LoadError extends Error {
  readonly code: PolicyErrorCode;
  readonly diagnostics: readonly Diagnostic[];
  constructor(code: PolicyErrorCode, diagnostics: readonly Diagnostic[], options?: { cause?: unknown }) {
    super(diagnostics.map(formatDiagnostic).join('\n') || code, options);
    this.name = 'LoadError';
    this.code = code;
    this.diagnostics = diagnostics;
  }
}
