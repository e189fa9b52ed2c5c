import { mkdir, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { runChain } from './helper-chain.js';
import type { CopyOp } from './helper-protocol.js';
import type { Mount } from './mount-spec.js';

/**
 * COPY and WORKDIR into a rootfs: the helper mounts `rootfs` at a directory under `scratchDir`
 * in a private mount namespace and performs `ops` there, in order, with the rootfs as `/` for
 * destination paths. Semantics of a copy (Docker's COPY):
 *  - `sources` are absolute host paths, never followed if symlinks; a directory's contents are
 *    copied into `dest` (created);
 *  - a non-directory goes to dest/<basename> when dest ends with '/', there are several sources or
 *    dest is an existing directory, otherwise it becomes dest;
 *  - every entry gets owner uid:gid (below a source marked in `keepOwners`, its own owner); modes (or `mode`, like --chmod) and mtimes are kept; missing
 *    parents are created 0755 owned uid:gid; an existing file is replaced.
 * Rejects with NotFoundError for a missing source, CancelledError on abort. Removes `scratchDir`.
 */
export async function copyInto(rootfs: Mount[], scratchDir: string, ops: CopyOp[], signal?: AbortSignal): Promise<void> {
  if (rootfs.length === 0) throw new InvalidArgumentError('copyInto: rootfs has no mounts');
  for (const op of ops) {
    if (op.op === 'copy') {
      for (const s of op.sources) if (!posix.isAbsolute(s)) throw new InvalidArgumentError(`COPY source must be an absolute host path: ${s}`);
      if (op.keepOwners !== undefined && op.keepOwners.length !== op.sources.length) throw new InvalidArgumentError(`COPY to ${op.dest}: keepOwners has ${op.keepOwners.length} entries for ${op.sources.length} sources`);
      if (!op.dest.startsWith('/')) throw new InvalidArgumentError(`COPY destination must be absolute: ${op.dest}`);
    } else if (!op.path.startsWith('/')) {
      throw new InvalidArgumentError(`mkdir: path must be absolute: ${op.path}`);
    }
  }
  const target = posix.join(scratchDir, 'rootfs');
  await mkdir(target, { recursive: true });
  try {
    const result = await runChain({ kind: 'copy', target, rootfs, ops }, { network: 'host', stdio: ['ignore', 'ignore', 'inherit'], signal });
    if (result.exitCode !== 0) throw new FailedPreconditionError(`copyInto: the helper failed (exit ${result.exitCode}${result.signal ? `, ${result.signal}` : ''}): ${result.diagnostics.trim()}`);
  } finally {
    await rm(scratchDir, { recursive: true, force: true });
  }
}
