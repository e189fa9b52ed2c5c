import { closeSync, openSync, readSync } from 'node:fs';
import { crypto } from '@tsbuild/oci';

/**
 * `bytes` random bytes in hex, for names: working containers' IDs, temporary files, cgroups,
 * hostnames. Read from /dev/urandom, the kernel's generator, which node:crypto's randomBytes
 * draws on as well; loading node:crypto costs ~4 ms of a cold process here (its whole family of
 * modules loads with it), and `from` and `run` need nothing else of it. Where /dev/urandom cannot
 * be read, node:crypto's.
 */
export function randomHex(bytes: number): string {
  const buf = Buffer.alloc(bytes);
  let fd: number | undefined;
  try {
    fd = openSync('/dev/urandom', 'r');
    for (let n = 0; n < bytes; ) {
      const got = readSync(fd, buf, n, bytes - n, null);
      if (got <= 0) throw new Error('/dev/urandom: short read');
      n += got;
    }
    return buf.toString('hex');
  } catch {
    return crypto().randomBytes(bytes).toString('hex');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
