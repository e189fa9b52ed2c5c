import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { InvalidArgumentError } from '@tsbuild/oci';
import { checkLevel } from './compression-level.js';

/**
 * zstd-napi, loaded on first use: its native module costs ~15 ms to load, which every command
 * paid before (a cached build never touches zstd).
 */
let zstd: typeof import('zstd-napi') | undefined;
function zstdNapi(): typeof import('zstd-napi') {
  zstd ??= createRequire(import.meta.url)('zstd-napi') as typeof import('zstd-napi');
  return zstd;
}

/**
 * zstd for `application/vnd.oci.image.layer.v1.tar+zstd` layers, through zstd-napi (libzstd
 * built with ZSTDMT). With `nbWorkers` > 0 libzstd compresses on its own threads: the stream's
 * write only hands input to those threads and collects finished output, so the main thread stays
 * free for the tar and the hashing, and one frame is produced however many workers ran.
 */
export interface ZstdOptions {
  /** zstd level 1–22 (19+ are the "ultra" levels). Default DEFAULT_ZSTD_LEVEL. */
  level?: number;
  /** Compression threads. Default: the number of CPUs. */
  workers?: number;
}

/** zstd's own default: at level 3 it already compresses better than gzip -9 at pigz -1 speed. */
export const DEFAULT_ZSTD_LEVEL = 3;

/**
 * Input bytes per multi-threaded job. libzstd's default at level 3 is 4 × the 2 MiB window =
 * 8 MiB, and it keeps several jobs' input and output buffers alive: compressing the 204 MB
 * Debian tar with 2 workers peaked at 148 MB RSS (8 MiB jobs), 123 MB (4 MiB), 106 MB (2 MiB),
 * for 84.31, 84.72 and 85.40 MB of output. A commit also holds the snapshotter's tar producer
 * (about 126 MB RSS with no compression at all), so the smallest footprint that still keeps the
 * output within 1.3 % of the default wins.
 */
const ZSTD_JOB_SIZE = 2 * 1024 * 1024;

export function createZstdCompress(opts: ZstdOptions = {}): Transform {
  const level = checkLevel('zstd', opts.level ?? DEFAULT_ZSTD_LEVEL);
  const workers = opts.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 0) {
    throw new InvalidArgumentError(`zstd workers ${String(workers)} is invalid: want a non-negative integer`);
  }
  // checksumFlag: a 4-byte XXH64 at the frame's end lets `zstd -t` and any reader detect
  // corruption on their own, as gzip's CRC does; its cost is negligible next to compression.
  return new (zstdNapi().CompressStream)({
    compressionLevel: level,
    nbWorkers: workers,
    checksumFlag: true,
    ...(workers > 0 ? { jobSize: ZSTD_JOB_SIZE } : {}),
  });
}

/** Decompresses a stream of zstd frames; a stream cut inside a frame is an error at its end. */
export function createZstdDecompress(): Transform {
  return new (zstdNapi().DecompressStream)();
}
