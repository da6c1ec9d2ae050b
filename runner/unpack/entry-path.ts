import { UnpackError } from './errors.js';

/**
 * Turns a tar entry name into path components below the root, or refuses it
 * (THREATS TAR-01, TAR-02, TAR-12): no absolute paths, no `..`, no NUL, bounded
 * length and depth. `./` prefixes and repeated or trailing slashes are tolerated.
 */
export const MAX_NAME_BYTES = 4096;
export const MAX_DEPTH = 128;

export function entryComponents(name: string): string[] {
  if (name.includes('\0')) throw new UnpackError('TAR_BAD_ENTRY', 'entry name contains NUL', name);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw new UnpackError('TAR_LIMIT', `entry name longer than ${MAX_NAME_BYTES} bytes`, name);
  if (name.startsWith('/')) throw new UnpackError('TAR_ABSOLUTE_PATH', 'absolute entry name', name);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new UnpackError('TAR_PATH_ESCAPE', 'entry name climbs out with ".."', name);
  if (parts.length > MAX_DEPTH) throw new UnpackError('TAR_LIMIT', `entry deeper than ${MAX_DEPTH} levels`, name);
  return parts;
}
