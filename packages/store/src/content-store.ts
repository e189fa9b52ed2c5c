import type { Hash } from 'node:crypto';
import { constants as fsConstants, readFileSync } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import {
  DataLossError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  digestAlgorithm,
  digestHex,
  isDigest,
  releaseChunk,
  type Digest,
  crypto,
} from '@tsbuild/oci';
import { randomHex } from '@tsbuild/linux';
import { fsyncDir } from './fs-sync.js';

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/**
 * Content-addressed blobs, after containerd's content store.
 *
 * Lifecycle of a blob:
 *   1. `write({expected, size})` opens a new temp file under `ingest/` and returns a BlobWriter.
 *   2. The caller streams bytes into it (`pipeline(src, writer)`); the writer hashes as it goes.
 *   3. `commit()` ends the stream, checks size and digest against what was expected, fsyncs and
 *      renames the file to `blobs/<alg>/<hex>`. Only from that moment is the blob visible to
 *      `info`, `read` and `list`. On a mismatch the temp file is removed and DataLossError thrown.
 *   4. A crash (even kill -9) before the rename leaves only a file in `ingest/`, which no reader
 *      looks at and which `Store.gc` deletes.
 * Blobs are immutable once committed; `delete` removes one (callers hold the exclusive lock).
 */
export interface ContentStore {
  info(d: Digest): Promise<BlobInfo | undefined>;
  /** NotFoundError if absent. */
  read(d: Digest): Promise<Readable>;
  /** A small blob (a manifest, a config) whole, in one read rather than a stream. NotFoundError if absent. */
  readBuffer(d: Digest): Promise<Buffer>;
  /** Where a committed blob lives. */
  path(d: Digest): string;
  write(opts?: { expected?: Digest; size?: number }): Promise<BlobWriter>;
  writeBuffer(buf: Uint8Array, expected?: Digest): Promise<BlobInfo>;
  /** NotFoundError if absent. */
  delete(d: Digest): Promise<void>;
  list(): AsyncIterable<BlobInfo>;
}

export interface BlobWriter extends Writable {
  /**
   * Verifies size and digest (DataLossError naming expected vs actual), fsyncs, renames into
   * blobs/ (idempotent if the blob exists). The temp file is removed on mismatch.
   */
  commit(): Promise<BlobInfo>;
  /** Discards what was written; the temp file is removed. */
  abort(): Promise<void>;
}

const HEX = { sha256: /^[a-f0-9]{64}$/, sha512: /^[a-f0-9]{128}$/ } as const;

/** The ContentStore of a Store root: `blobs/<alg>/<hex>` and `ingest/`. */
export class FileContentStore implements ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;

  constructor(root: string) {
    this.blobsDir = join(root, 'blobs');
    this.ingestDir = join(root, 'ingest');
  }

  path(d: Digest): string {
    if (!isDigest(d)) throw new InvalidArgumentError(`invalid digest "${d}"`);
    return join(this.blobsDir, digestAlgorithm(d), digestHex(d));
  }

  /** What to throw for an error on blob `d`'s file: NotFoundError naming the blob when it is absent. */
  private notFound(e: unknown, d: Digest): unknown {
    return isErrno(e, 'ENOENT') ? new NotFoundError(`blob not found: ${d} (${this.path(d)})`) : e;
  }

  async info(d: Digest): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(this.path(d));
      return { digest: d, size: st.size };
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return undefined;
      throw e;
    }
  }

  async read(d: Digest): Promise<Readable> {
    // Open first so that a missing blob is a NotFoundError here, not an 'error' event later.
    let fh: FileHandle;
    try {
      fh = await open(this.path(d), 'r');
    } catch (e) {
      throw this.notFound(e, d);
    }
    return fh.createReadStream({ highWaterMark: 1 << 20 });
  }

  async readBuffer(d: Digest): Promise<Buffer> {
    try {
      // At once: a manifest or config is a few KB, read quicker than four trips through the
      // thread pool (open, fstat, read, close) take.
      return readFileSync(this.path(d));
    } catch (e) {
      throw this.notFound(e, d);
    }
  }

  async write(opts: { expected?: Digest; size?: number } = {}): Promise<BlobWriter> {
    if (opts.expected !== undefined && !isDigest(opts.expected)) {
      throw new InvalidArgumentError(`invalid digest "${opts.expected}"`);
    }
    const alg = opts.expected !== undefined ? digestAlgorithm(opts.expected) : 'sha256';
    await mkdir(this.ingestDir, { recursive: true });
    const tmp = join(this.ingestDir, `${process.pid}-${randomHex(8)}`);
    const fh = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    return new FileBlobWriter(this, fh, tmp, alg, opts.expected, opts.size);
  }

  async writeBuffer(buf: Uint8Array, expected?: Digest): Promise<BlobInfo> {
    // Small blobs (configs, manifests) are often written again as they are: a cached rebuild
    // writes the same config and manifest. A blob already committed is not written (and fsynced) twice.
    const alg = expected !== undefined ? digestAlgorithm(expected) : 'sha256';
    const digest = `${alg}:${crypto().createHash(alg).update(buf).digest('hex')}` as Digest;
    if (expected === undefined || expected === digest) {
      const have = await this.info(digest);
      if (have?.size === buf.byteLength) return have;
    }
    const w = await this.write({ ...(expected !== undefined ? { expected } : {}), size: buf.byteLength });
    w.end(buf);
    return w.commit();
  }

  async delete(d: Digest): Promise<void> {
    try {
      await unlink(this.path(d));
    } catch (e) {
      throw this.notFound(e, d);
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const alg of ['sha256', 'sha512'] as const) {
      const dir = join(this.blobsDir, alg);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (isErrno(e, 'ENOENT')) continue;
        throw e;
      }
      names.sort();
      for (const name of names) {
        if (!HEX[alg].test(name)) continue;
        const digest = `${alg}:${name}` as Digest;
        const info = await this.info(digest);
        if (info !== undefined) yield info;
      }
    }
  }
}

/**
 * Bytes written between background fdatasync calls. Starting writeback while the blob still
 * arrives leaves the final fsync little to wait for: measured on 100 MB here, the fsync at the
 * end took 50-55 ms after plain writes and 5-7 ms with this, for the same write time.
 */
const WRITEBACK_EVERY = 8 << 20;

class FileBlobWriter extends Writable implements BlobWriter {
  private readonly hash: Hash;
  private written = 0;
  private committed = false;
  private unsynced = 0;
  private writeback?: Promise<void>;
  private writebackError?: Error;

  constructor(
    private readonly store: FileContentStore,
    private readonly fh: FileHandle,
    private readonly tmp: string,
    private readonly alg: 'sha256' | 'sha512',
    private readonly expected: Digest | undefined,
    private readonly expectedSize: number | undefined,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.hash = crypto().createHash(alg);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written += chunk.length;
    if (this.expectedSize !== undefined && this.written > this.expectedSize) {
      cb(this.sizeError(`more than ${this.expectedSize}`));
      return;
    }
    this.hash.update(chunk);
    writeAll(this.fh, chunk).then(() => {
      // The last holder of a pooled chunk hands it back (the snapshotter's diff reuses it).
      releaseChunk(chunk);
      this.unsynced += chunk.length;
      if (this.unsynced >= WRITEBACK_EVERY && this.writeback === undefined) {
        this.unsynced = 0;
        this.writeback = this.fh.datasync().then(
          () => void (this.writeback = undefined),
          (e: Error) => void ((this.writebackError ??= e), (this.writeback = undefined)),
        );
      }
      cb(this.writebackError);
    }, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    // fsync before the rename in commit(): otherwise a power loss could leave a renamed blob
    // whose data blocks never reached the disk (ext4/xfs order metadata, not data, by default).
    Promise.resolve(this.writeback)
      .then(() => {
        if (this.writebackError) throw this.writebackError;
        return this.fh.sync();
      })
      .then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    Promise.resolve(this.writeback)
      .then(() => this.fh.close())
      .then(
      () => cb(err),
      () => cb(err),
    );
  }

  async commit(): Promise<BlobInfo> {
    if (this.committed) throw new FailedPreconditionError(`blob writer ${this.tmp} already committed`);
    this.committed = true;
    try {
      if (!this.writableEnded) this.end();
      await finished(this);
    } catch (e) {
      await removeQuietly(this.tmp);
      throw e;
    }
    const digest = `${this.alg}:${this.hash.digest('hex')}` as Digest;
    if (this.expectedSize !== undefined && this.written !== this.expectedSize) {
      await removeQuietly(this.tmp);
      throw this.sizeError(String(this.written));
    }
    if (this.expected !== undefined && digest !== this.expected) {
      await removeQuietly(this.tmp);
      throw new DataLossError(`blob digest mismatch: expected ${this.expected}, got ${digest} (${this.written} bytes)`);
    }
    const final = this.store.path(digest);
    if ((await this.store.info(digest)) !== undefined) {
      await removeQuietly(this.tmp);
    } else {
      const dir = join(this.store.blobsDir, this.alg);
      await mkdir(dir, { recursive: true });
      await rename(this.tmp, final);
      await fsyncDir(dir);
    }
    return { digest, size: this.written };
  }

  async abort(): Promise<void> {
    this.committed = true;
    if (!this.destroyed) this.destroy();
    await finished(this).catch(() => undefined);
    await removeQuietly(this.tmp);
  }

  private sizeError(got: string): DataLossError {
    const what = this.expected ?? 'blob';
    return new DataLossError(`blob size mismatch for ${what}: expected ${this.expectedSize} bytes, got ${got}`);
  }
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

export function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}
