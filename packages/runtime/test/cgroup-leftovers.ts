import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every tsbuild-<pid>-* cgroup, in any mounted hierarchy, of the runs of process `pid` (this test
 * worker by default: other tsbuild processes may be running meanwhile).
 */
export function tsbuildCgroups(pid = process.pid, root = '/sys/fs/cgroup'): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (e.name.startsWith(`tsbuild-${pid}-`)) found.push(p);
      if (depth < 4) walk(p, depth + 1);
    }
  };
  walk(root, 0);
  return found;
}
