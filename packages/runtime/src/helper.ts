/**
 * The helper process: started by tsbuild as
 *   setpriv --pdeathsig KILL -- unshare --mount --uts --ipc --pid --fork --kill-child [--net] -- node helper.cjs
 * (node being a read-only mount of node's binary, passed as fd 5, and the init's, if any, as fd 6:
 * see readOnlyExecutable in helper-chain.ts)
 * it reads one request (a JSON line) on fd 3, does the mounts in its own mount namespace and then
 * either execve's a RUN command (which thereby becomes PID 1) or performs COPY operations and exits.
 * Node itself is multi-threaded, so namespaces cannot be entered from tsbuild's own process.
 */
import { closeSync, readFileSync, readSync, writeSync } from 'node:fs';
import { MS, bindLibc, dup2, mount, openPty } from '@tsbuild/linux';
import { applyCopyOps } from './copy-ops.js';
import { enterContainer } from './container-setup.js';
import { execCommand } from './exec-command.js';
import { HelperFailure } from './helper-failure.js';
import { HELPER_SETUP_FAILED, INIT_EXE_FD, NODE_EXE_FD, PTY_TAKEN_LINE, ptyLine, type HelperReply, type HelperRequest } from './helper-protocol.js';
import { mountAll } from './mount-spec.js';

const CONTROL_FD = 3;
const COMMAND_STDERR_FD = 4;

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

/**
 * `run -t`: a pty from the container's devpts (mounted by enterContainer); tsbuild takes a copy
 * of the master, then ours is closed. Returns the slave, for execCommand to make the terminal.
 */
function handOverPty(): number {
  const { master, slave } = openPty();
  writeSync(CONTROL_FD, `${ptyLine(master)}\n`);
  if (readLine() !== PTY_TAKEN_LINE) throw new HelperFailure('INTERNAL', 'tsbuild did not take the terminal');
  closeSync(master);
  return slave;
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
  // Our own executable's descriptor must not be there for the command to reach through
  // /proc/self/fd while we execve it (the init's goes below, unless we execute the init).
  closeQuietly(NODE_EXE_FD);
  // koffi and libc's functions load while tsbuild may still be preparing the request (~2 ms);
  // nothing is changed before the request has been read and checked. Should they fail to load,
  // the first call fails again below, and that is answered as any other failure.
  try {
    bindLibc();
  } catch {
    // answered below
  }
  const req = JSON.parse(readLine()) as HelperRequest;
  // unshare sets our parent-death signal after fork; if it died before that we would be orphaned
  // without knowing it. Our parent must still be the process tsbuild started.
  if (hostParentPid() !== req.chainPid) process.exit(128 + 9);
  if (req.kind !== 'run' || req.init === undefined) closeQuietly(INIT_EXE_FD);
  try {
    // tsbuild has moved us into the run's cgroups already (CgroupMove in helper-chain.ts).
    if (req.kind === 'run') {
      // The command's stderr arrives as fd 4; our fd 2 is tsbuild's diagnostics pipe.
      dup2(COMMAND_STDERR_FD, 2);
      enterContainer(req);
      execCommand(req, CONTROL_FD, req.terminal === true ? handOverPty() : undefined);
    } else {
      mount(null, '/', null, MS.REC | MS.PRIVATE);
      mountAll(req.rootfs, req.target);
      applyCopyOps(req.target, req.ops);
      process.exit(0);
    }
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
