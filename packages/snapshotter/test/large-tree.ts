import { chmod, chown, link, lutimes, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setXattr } from '@tsbuild/linux';

/** The layer writer's output chunk size (diff.ts), which the sizes below straddle. */
export const CHUNK = 512 * 1024;

/** Deterministic bytes: text-like runs (compressible) and xorshift noise (incompressible). */
export function content(seed: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  const words = Buffer.from(`usr/share/doc/pkg-${seed}/copyright GPL-2+ #!/bin/sh\nset -e\n`);
  let off = 0;
  while (off < size) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const n = Math.min(size - off, 200 + (x % 9000));
    if (x % 3 === 0) {
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        b[off + i] = x & 0xff;
      }
    } else {
      for (let i = 0; i < n; i++) b[off + i] = words[(off + i) % words.length]!;
    }
    off += n;
  }
  return b;
}

/**
 * A tree of ~25 MB whose layer tar spans ~50 output chunks and ~25 gzip jobs: files of sizes
 * around the chunk size and the 512-byte block, 600 small files at every offset within a chunk,
 * hardlinks, symlinks, a name that needs a pax header, a non-ASCII name and xattrs. Modes,
 * owners and mtimes are set explicitly, so the tar is the same bytes on every machine (the
 * golden digests in the tests depend on it). Needs root (chown).
 */
export async function makeLargeTree(root: string): Promise<void> {
  const mtime = 1_700_000_000;
  const dirs: string[] = [];
  const dir = async (rel: string, mode = 0o755): Promise<string> => {
    const p = join(root, rel);
    await mkdir(p, { recursive: true });
    await chmod(p, mode);
    dirs.push(p);
    return p;
  };
  const file = async (rel: string, data: Buffer, mode = 0o644, owner = 0): Promise<string> => {
    const p = join(root, rel);
    await writeFile(p, data);
    await chmod(p, mode);
    await chown(p, owner, owner);
    await utimes(p, mtime, mtime);
    return p;
  };

  await dir('sizes');
  const sizes = [0, 1, 100, 511, 512, 513, 4095, 4096, 65_535, CHUNK - 513, CHUNK - 512, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 300, 3 * 1024 * 1024 + 17, 7 * 1024 * 1024 + 4321];
  for (const [i, size] of sizes.entries()) await file(`sizes/f${String(i).padStart(2, '0')}-${size}`, content(i + 1, size));

  await dir('many');
  for (let d = 0; d < 6; d++) {
    await dir(`many/d${d}`, d % 2 ? 0o750 : 0o755);
    for (let i = 0; i < 100; i++) {
      const seed = 1000 + d * 100 + i;
      // 0 to ~24 KiB, so entry boundaries fall at every offset within a chunk.
      await file(`many/d${d}/f${String(i).padStart(3, '0')}`, content(seed, (seed * 7919) % 24_577), i % 5 ? 0o644 : 0o755, i % 7 ? 0 : 1000);
    }
  }

  await dir('misc');
  const linked = await file('misc/linked', content(7, 300_000));
  await link(linked, join(root, 'misc/linked-again'));
  await symlink('../sizes/f03-511', join(root, 'misc/symlink'));
  await lutimes(join(root, 'misc/symlink'), mtime, mtime);
  await file(`misc/${'long-name-'.repeat(12)}end`, content(8, 2000));
  await file('misc/naïve-ünïcode', content(9, 1500));
  const xa = await file('misc/with-xattrs', content(10, 5000));
  setXattr(xa, 'user.bin', Buffer.from([0, 0x80, 0xff, 0x0a, 0x3d]));
  setXattr(xa, 'user.text', 'v'.repeat(1000));
  await file('misc/setuid', content(11, 10), 0o4755);

  for (const p of [...dirs.reverse(), root]) await utimes(p, mtime, mtime);
}
