import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

/** What deploy/Containerfile's base must hold besides a shell: node and util-linux's tools, slirp4netns. */
export const HOST_TOOLS = ['node', 'unshare', 'setpriv', 'nsenter', 'slirp4netns'];

/**
 * A stand-in for deploy/Containerfile's BASE (node:20-bookworm-slim) made from this machine's own
 * binaries, as no registry is reachable here: busybox for the shell and coreutils, the host's node,
 * unshare, setpriv, nsenter and slirp4netns in /usr/bin, and each shared library `ldd` lists for
 * them at the path it lists (so the host's dynamic loader paths work unchanged).
 */
export function makeHostBaseRootfs(dir: string): string {
  makeBusyboxRootfs(dir);
  const files = new Set<string>();
  for (const tool of HOST_TOOLS) {
    const bin = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    if (bin === '') throw new Error(`${tool} is not installed on this machine`);
    const dest = path.join(dir, 'usr/bin', tool);
    rmSync(dest, { force: true }); // busybox's applet of the same name, if any
    copyFileSync(bin, dest);
    chmodSync(dest, 0o755);
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)"
    for (const m of execFileSync('ldd', [bin], { encoding: 'utf8' }).matchAll(/(?:=> )?(\/\S+) \(0x/g)) files.add(m[1]!);
  }
  for (const f of files) {
    mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
    copyFileSync(f, path.join(dir, f)); // follows the host's symlinks: the file itself
  }
  return dir;
}
