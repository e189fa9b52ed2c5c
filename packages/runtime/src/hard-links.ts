import { linkSync, lstatSync, type Stats } from 'node:fs';
import { lstatIfExists } from '@tsbuild/linux';

/**
 * Hard links among the files of one COPY: a second name of an inode already copied becomes a
 * link to its copy (one inode, nlink as in the source), as BuildKit's copy (fsutil, keyed by the
 * source inode) and buildah do. Only files with nlink > 1 are tracked. Used by both COPY writers:
 * the helper's (copy-ops) and the direct upperdir writer of @tsbuild/builder.
 */
export class HardLinks {
  private readonly seen = new Map<string, { dest: string; ino: number }>();

  /** Links `dest` to the copy of `st`'s inode if there is one still in place; true if it did. */
  linked(st: Stats, dest: string): boolean {
    if (st.nlink < 2) return false;
    const first = this.seen.get(`${st.dev}:${st.ino}`);
    // The first copy may have been replaced since by a later source of the same name.
    if (first === undefined || lstatIfExists(first.dest)?.ino !== first.ino) return false;
    linkSync(first.dest, dest);
    return true;
  }

  copied(st: Stats, dest: string): void {
    if (st.nlink < 2) return;
    const ino = lstatSync(dest).ino;
    this.seen.set(`${st.dev}:${st.ino}`, { dest, ino });
  }
}
