/**
 * The one rule for a path that comes from a Dockerfile, a build context, an image or an archive:
 * it is resolved as the kernel would resolve it after chroot(2) to its root (what runc and
 * BuildKit call a secure join, and what openat2(2) does with RESOLVE_IN_ROOT). `..` stops at the
 * root, an absolute symlink target starts again at the root, a relative one continues from the
 * link's directory, and nothing ever leads out to the host. After 40 links (path_resolution(7))
 * the lookup fails with ELOOP.
 *
 * The walk is written once, as a generator over the components it has resolved so far: it yields
 * the components of an entry and is answered with that entry's link target, or undefined when
 * the entry is no symlink (or is missing). `resolveInRootSync` and `resolveInRoot` drive it for
 * trees read synchronously (a mounted rootfs, in the runtime helper) and asynchronously (a
 * build context, a merged view of snapshot layers). Where a real directory is at hand, the kernel
 * does the same walk: see openInRoot in @tsbuild/linux, which uses the resolved object by
 * descriptor so that nothing can swap a component between the check and the use.
 */

/** Linux's limit on symlinks followed in one lookup (path_resolution(7)). */
export const MAX_SYMLINKS = 40;

export interface InRootWalkOptions {
  /** Follow a symlink in the last component too (default: keep it, as lstat does). */
  followFinal?: boolean;
}

/** Thrown after MAX_SYMLINKS links: shaped like node's own ELOOP errors. */
export class SymlinkLoopError extends Error {
  readonly code = 'ELOOP';
  constructor(readonly path: string) {
    super(`${path}: too many levels of symbolic links`);
  }
}

/**
 * The walk itself. Yields the already resolved components of each entry whose link target it
 * needs (every component but the last, and the last with `followFinal`); returns the resolved
 * components. Components that do not exist are kept as written (a path to create).
 */
export function* inRootWalk(p: string, o: InRootWalkOptions = {}): Generator<string[], string[], string | undefined> {
  let pending = pathParts(p);
  const done: string[] = [];
  for (let links = 0; pending.length > 0; ) {
    const name = pending.shift()!;
    if (name === '..') {
      done.pop();
      continue;
    }
    const target = pending.length > 0 || o.followFinal ? yield [...done, name] : undefined;
    if (target !== undefined) {
      if (++links > MAX_SYMLINKS) throw new SymlinkLoopError(p);
      if (target.startsWith('/')) done.length = 0;
      pending = [...pathParts(target), ...pending];
      continue;
    }
    done.push(name);
  }
  return done;
}

/** Drives inRootWalk with a synchronous `readLink(components)`. */
export function resolveInRootSync(p: string, readLink: (parts: string[]) => string | undefined, o: InRootWalkOptions = {}): string[] {
  const walk = inRootWalk(p, o);
  for (let step = walk.next(); ; step = walk.next(readLink(step.value))) if (step.done) return step.value;
}

/** Drives inRootWalk with an asynchronous `readLink(components)`. */
export async function resolveInRoot(p: string, readLink: (parts: string[]) => Promise<string | undefined>, o: InRootWalkOptions = {}): Promise<string[]> {
  const walk = inRootWalk(p, o);
  for (let step = walk.next(); ; step = walk.next(await readLink(step.value))) if (step.done) return step.value;
}

/** Path components without empty and `.` ones. */
export function pathParts(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** `/a/b` for components ['a', 'b'], `/` for none. */
export function joinParts(parts: readonly string[]): string {
  return `/${parts.join('/')}`;
}
