import { InvalidArgumentError } from '@tsbuild/oci';

/** The highest level each compressor takes (zstd's 20–22 are its "ultra" levels); both start at 1. */
const MAX_LEVEL = { gzip: 9, zstd: 22 } as const;

/** `level` if it is a level `format` takes, else an InvalidArgumentError saying the range. */
export function checkLevel(format: 'gzip' | 'zstd', level: number): number {
  const max = MAX_LEVEL[format];
  if (!Number.isInteger(level) || level < 1 || level > max) {
    throw new InvalidArgumentError(`${format} level ${String(level)} is out of range: want an integer from 1 to ${max}`);
  }
  return level;
}
