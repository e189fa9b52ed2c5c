import { promises as fsp } from 'node:fs';
import path from 'node:path';

/** Writes `files` (path relative to `dir` → content) under `dir`, making parent directories; returns `dir`. */
export async function writeFiles(dir: string, files: Record<string, string | Buffer>): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fsp.writeFile(path.join(dir, name), content);
  }
  return dir;
}
