/** Why a layer was refused; each names the entry that caused it. */
export type UnpackErrorCode =
  | 'TAR_PATH_ESCAPE'
  | 'TAR_ABSOLUTE_PATH'
  | 'TAR_THROUGH_SYMLINK'
  | 'TAR_HARDLINK_ESCAPE'
  | 'TAR_DEVICE_NODE'
  | 'TAR_BAD_ENTRY'
  | 'TAR_LIMIT'
  | 'LAYER_DIFFID_MISMATCH'
  | 'LAYER_COMPRESSION'
  | 'CONFINEMENT_UNAVAILABLE'
  | 'UNPACK_FAILED';

export class UnpackError extends Error {
  constructor(
    readonly code: UnpackErrorCode,
    message: string,
    readonly entry?: string,
  ) {
    super(entry === undefined ? message : `${message}: ${JSON.stringify(entry.slice(0, 200))}`);
    this.name = 'UnpackError';
  }
}
