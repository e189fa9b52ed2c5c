import { writeSync } from 'node:fs';

/** The status of a command whose reader went away: a shell's for one killed by SIGPIPE (128 + 13). */
const READER_GONE = 141;

/**
 * Writes `text` to stdout, at once, with write(2): what node's process.stdout does on Linux for a
 * file, a pipe or a terminal (its writes there are synchronous), without making process.stdout,
 * which for a pipe is a net.Socket: node:net and node:tty cost ~5 ms of a short command here
 * (`ctr=$(tsbuild from busybox)`), measured. What write(2) did not take because a non-blocking
 * pipe is full (EAGAIN) goes to process.stdout, which waits for the pipe; the order of the output
 * is kept. A reader that went away (EPIPE: `tsbuild images | head -1`) ends the command quietly
 * with status 141, as SIGPIPE ends docker's, podman's and buildah's (Go lets a write to a closed
 * stdout kill the process), instead of an internal error; the exit listeners still run.
 */
export function print(text: string): void {
  const buf = Buffer.from(text);
  let done = 0;
  try {
    while (done < buf.length) done += writeSync(1, buf, done);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(READER_GONE);
    process.stdout.write(buf.subarray(done));
  }
}
