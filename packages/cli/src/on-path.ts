import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** An executable named `name` on PATH, as execvp would find it; undefined when there is none. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}
