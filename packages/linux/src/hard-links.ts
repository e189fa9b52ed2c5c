import { linkSync, lstatSync, type Stats } from 'node:fs';
import { lstatIfExists } from './nodes.js';

/**
 * Hard links among the files of one COPY source: a second name of an inode already copied becomes
 * a link to its copy (one inode, nlink as in the source), as BuildKit's copy (fsutil, keyed by the
 * source inode) and buildah do. Only files with nlink > 1 are tracked. Used by both COPY writers:
 * the helper's (copy-ops) and the direct upperdir writer of @tsbuild/container.
 *
 * One instance per source, never per COPY: BuildKit's Dockerfile frontend makes one copy action
 * per source (dockerfile2llb convert_copy.go), each with its own fsutil copier and so its own
 * inode map, and buildah 1.28 does not link across sources either. It matters beyond fidelity:
 * a COPY --from source or a followed symlink is staged as a hard link to the layer's (or the
 * context's) file, so its nlink is > 1 even when the file has one name, and one shared instance
 * would turn `COPY --from=s /f /link-to-f /d/` into one inode. The matches of one wildcard
 * source share an instance (CopyOp.linkGroups), as they share BuildKit's copier.
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

/**
 * The link table for source `i` of a copy op: one per link group (CopyOp.linkGroups), else one per
 * source. `make` makes an empty one (a HardLinks, or a copy's own kind of table).
 */
export function linksOf<T>(op: { linkGroups?: number[] }, i: number, groups: Map<number, T>, make: () => T): T {
  const g = op.linkGroups?.[i];
  if (g === undefined) return make();
  let links = groups.get(g);
  if (links === undefined) groups.set(g, (links = make()));
  return links;
}
