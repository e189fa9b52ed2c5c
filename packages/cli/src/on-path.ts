import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/**
 * An executable named `name` on PATH, as execvp would find it; undefined when there is none. An
 * unset PATH is the default the commands give their children, so a check agrees with the spawn.
 */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
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
