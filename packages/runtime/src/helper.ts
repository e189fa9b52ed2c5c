/**
 * The helper of a copy: started by tsbuild as
 *   setpriv --pdeathsig KILL -- unshare --mount --uts --ipc --pid --fork --kill-child -- node helper.cjs
 * (node being a read-only mount of node's binary, passed as fd 5: see readOnlyExecutable in
 * helper-chain.ts), it reads one request (a JSON line) on fd 3, mounts the rootfs in its own mount
 * namespace, performs the copy operations and exits. Node itself is multi-threaded, so namespaces
 * cannot be entered from tsbuild's own process. A run's helper is run-helper.c.
 */
import { closeSync, readFileSync, readSync, writeSync } from 'node:fs';
import { MS, bindLibc, mount } from '@tsbuild/linux';
import { applyCopyOps } from './copy-ops.js';
import { HelperFailure } from './helper-failure.js';
import { HELPER_EXE_FD, HELPER_SETUP_FAILED, INIT_EXE_FD, type CopyRequest, type HelperReply } from './helper-protocol.js';
import { mountAll } from './mount-spec.js';

const CONTROL_FD = 3;

/** The next line tsbuild sends on fd 3 (the socket may be non-blocking: EAGAIN is waited out). */
function readLine(): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n: number;
    try {
      n = readSync(CONTROL_FD, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
    if (n === 0) process.exit(HELPER_SETUP_FAILED); // tsbuild went away
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl >= 0) {
      chunks.push(Buffer.from(buf.subarray(0, nl)));
      return Buffer.concat(chunks).toString('utf8');
    }
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
}

/** The parent pid as the host sees it: /proc is still the host's until we mount our own. */
function hostParentPid(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // EBADF: not passed
  }
}

function main(): void {
  // Our own executable's descriptor (and fd 6, the same again) must not reach what we copy from.
  closeQuietly(HELPER_EXE_FD);
  closeQuietly(INIT_EXE_FD);
  // The libc addon loads while tsbuild may still be preparing the request;
  // nothing is changed before the request has been read and checked. Should they fail to load,
  // the first call fails again below, and that is answered as any other failure.
  try {
    bindLibc();
  } catch {
    // answered below
  }
  const req = JSON.parse(readLine()) as CopyRequest;
  // unshare sets our parent-death signal after fork; if it died before that we would be orphaned
  // without knowing it. Our parent must still be the process tsbuild started.
  if (hostParentPid() !== req.chainPid) process.exit(128 + 9);
  try {
    mount(null, '/', null, MS.REC | MS.PRIVATE);
    mountAll(req.rootfs, req.target);
    applyCopyOps(req.target, req.ops);
    process.exit(0);
  } catch (e) {
    const reply: HelperReply = {
      error:
        e instanceof HelperFailure
          ? { code: e.code, message: e.message }
          : { code: 'FAILED_PRECONDITION', message: (e as Error).message },
    };
    writeSync(CONTROL_FD, `${JSON.stringify(reply)}\n`);
    process.exit(HELPER_SETUP_FAILED);
  }
}

main();
