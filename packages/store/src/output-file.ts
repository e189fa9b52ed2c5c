import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { randomHex } from '@tsbuild/linux';
import { fsyncDir } from './fs-sync.js';

/**
 * Writes a file the user named (`save -o`, `export -o`) the way the store writes its own: into a
 * temp file beside it, then fsync and rename. On any failure the temp file is removed, so `out`
 * is either as it was or complete, never a partial archive that a later `load` half reads. A
 * failure of the file itself (no such directory, permission, disk full) is one error naming
 * `out`, not the temp file.
 */
export async function writeOutputFile(out: string, write: (w: Writable) => Promise<void>): Promise<void> {
  const target = resolve(out);
  const tmp = join(dirname(target), `.${basename(target)}.${randomHex(6)}.tmp`);
  const fh = await open(tmp, 'wx', 0o644).catch((e: unknown) => {
    throw outputError(out, e);
  });
  // The stream closes the file when it ends or fails (a FileHandle with a stream open on it cannot
  // be closed apart from it: its close() waits for the stream).
  const file = fh.createWriteStream();
  try {
    await write(file);
    if (!file.closed) await finished(file);
    const again = await open(tmp, 'r+');
    try {
      await again.sync();
    } finally {
      await again.close();
    }
    await rename(tmp, target);
    await fsyncDir(dirname(target));
  } catch (e) {
    file.destroy();
    await rm(tmp, { force: true });
    throw outputError(out, e);
  }
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such directory',
  ENOTDIR: 'a parent is not a directory',
  EISDIR: 'it is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'I/O error',
};

/** A system error on the output file named by what the user gave; anything else as it is. */
function outputError(out: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return e;
  const why = REASONS[code] ?? code;
  // Where the file goes is the caller's choice (a wrong path); a full or failing disk is not.
  const bad = code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  return bad ? new InvalidArgumentError(`cannot write ${out}: ${why}`, { cause: e }) : new FailedPreconditionError(`cannot write ${out}: ${why}`, { cause: e });
}
