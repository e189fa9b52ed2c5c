import { accessSync, closeSync, constants, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { FailedPreconditionError } from '@tsbuild/oci';

/**
 * Inits that reap zombies and forward signals, in order of preference, all taking
 * `INIT -- PROGRAM ARGS`. tini-static first: Debian's `tini` package ships it (docker's
 * docker-init is tini too). The init must be linked statically: the helper executes it as the
 * container's process, inside the rootfs, where the host's shared libraries are not.
 */
const INITS = ['tini-static', 'tini', 'catatonit', 'dumb-init'];

const USUAL_DIRS = ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/libexec/podman'];

/** The host path of the first statically linked init found on PATH (and the usual sbin/bin directories). */
export function findInit(pathVar = process.env.PATH ?? '', usualDirs = USUAL_DIRS): string {
  const dirs = [...pathVar.split(':').filter((d) => d.startsWith('/')), ...usualDirs];
  const dynamic: string[] = [];
  for (const name of INITS) {
    for (const dir of dirs) {
      const p = posix.join(dir, name);
      try {
        accessSync(p, constants.X_OK);
      } catch {
        continue; // not here
      }
      if (staticallyLinked(p)) return p;
      dynamic.push(p);
    }
  }
  if (dynamic.length > 0) {
    throw new FailedPreconditionError(`run: init requested but ${[...new Set(dynamic)].join(', ')} ${dynamic.length > 1 ? 'are' : 'is'} linked dynamically, and an init starts inside the container: install a static one (apt-get install tini gives tini-static)`);
  }
  throw new FailedPreconditionError(`run: init requested but none of ${INITS.join(', ')} is installed (apt-get install tini)`);
}

/** An ELF executable without a PT_INTERP program header: it needs no dynamic loader. */
export function staticallyLinked(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 52 || head.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32)) : u32(head, 28);
    const phentsize = u16(head, is64 ? 54 : 42);
    const phnum = u16(head, is64 ? 56 : 44);
    if (phnum === 0 || phentsize < 4 || phnum > 256) return false;
    const table = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, table, 0, table.length, phoff) < table.length) return false;
    const PT_INTERP = 3;
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === PT_INTERP) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}
