/**
 * Resolves a path inside a root of our own (a build context, an image's merged view) the way the
 * kernel would after chroot: `..` stops at the root, an absolute symlink target starts again at
 * the root, and nothing ever leads out to the host. `readLink(parts)` answers for the entry at
 * already-resolved components: its target when it is a symlink, undefined otherwise (missing
 * entries included). The final component is followed only with `followFinal`. Returns the
 * resolved components, or undefined after 40 links (ELOOP).
 */
export async function resolveInRoot(p: string, readLink: (parts: string[]) => Promise<string | undefined>, followFinal = false): Promise<string[] | undefined> {
  let pending = pathParts(p);
  const done: string[] = [];
  for (let hops = 0; pending.length > 0; ) {
    const name = pending.shift()!;
    if (name === '..') {
      done.pop();
      continue;
    }
    const target = pending.length > 0 || followFinal ? await readLink([...done, name]) : undefined;
    if (target !== undefined) {
      if (++hops > 40) return undefined;
      if (target.startsWith('/')) done.length = 0;
      pending = [...pathParts(target), ...pending];
      continue;
    }
    done.push(name);
  }
  return done;
}

/** Path components without empty and `.` ones. */
export function pathParts(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}
