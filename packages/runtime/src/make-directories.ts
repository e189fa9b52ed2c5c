import { mkdirSync } from 'node:fs';

/**
 * `mkdir -p` for paths an image or a Dockerfile controls. Node's `mkdirSync(p, { recursive: true })`
 * never returns when mkdir(2) answers ENOENT for a directory whose parent exists, as procfs does
 * (`WORKDIR /proc/nope`, `-w /proc/self/fd/19`): it makes the parent (EEXIST) and retries the
 * child, forever, at 100% CPU. Here each component is made once, in order, and any error but
 * EEXIST ends it (thrown as the ErrnoException of that component).
 */
export function makeDirectories(path: string, mode = 0o755): void {
  let p = path.startsWith('/') ? '' : '.';
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    p += `/${part}`;
    try {
      mkdirSync(p, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}
