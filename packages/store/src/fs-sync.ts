import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * fsync(2) on a directory: makes a rename or unlink inside it durable. Without it a crash after
 * rename(2) returned may still come back with the old directory entry (ext4 data=ordered).
 */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `path` atomically: write `tmp`, fsync it, rename over `path`, fsync the directory.
 * Readers see either the old or the new content, never a torn file. Callers serialise writers
 * (the tmp name is fixed so a crash leaves at most one stale temp file, overwritten next time).
 */
export async function writeFileAtomic(path: string, tmp: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}
