import { pipeline, Transform, type Readable } from 'node:stream';

/** How often countedStream reports: every MiB passed. */
export const PROGRESS_STEP = 1 << 20;

/**
 * `src` passed through unchanged, calling `onBytes` with the bytes passed so far (starting from
 * `from`, for a transfer resumed at an offset) about every PROGRESS_STEP, and once more at the end
 * when `atEnd` is set. Progress for compression (compressImage) and uploads (registry-client).
 */
export function countedStream(src: Readable, onBytes: (n: number) => void, opts: { from?: number; atEnd?: boolean } = {}): Readable {
  let n = opts.from ?? 0;
  let reported = n;
  return pipeline(
    src,
    new Transform({
      transform(c: Buffer, _e, cb) {
        n += c.length;
        if (n - reported >= PROGRESS_STEP) {
          reported = n;
          onBytes(n);
        }
        cb(null, c);
      },
      flush(cb) {
        if (opts.atEnd === true) onBytes(n);
        cb();
      },
    }),
    () => undefined,
  );
}
