import { writeSync } from 'node:fs';

/**
 * Writes `text` to stdout, at once, with write(2): what node's process.stdout does on Linux for a
 * file, a pipe or a terminal (its writes there are synchronous), without making process.stdout,
 * which for a pipe is a net.Socket: node:net and node:tty cost ~5 ms of a short command here
 * (`ctr=$(tsbuild from busybox)`), measured. Whatever write(2) did not take (a non-blocking pipe
 * that is full: EAGAIN; a reader that went away: EPIPE) goes to process.stdout as before, which
 * waits for the pipe or reports the error as it always has; the order of the output is kept.
 */
export function print(text: string): void {
  const buf = Buffer.from(text);
  let done = 0;
  try {
    while (done < buf.length) done += writeSync(1, buf, done);
  } catch {
    process.stdout.write(buf.subarray(done));
  }
}
