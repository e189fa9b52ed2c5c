import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DataLossError, InvalidArgumentError, UnavailableError, childProcess, crypto } from '@tsbuild/oci';
import { apply, decompressed } from '@tsbuild/snapshotter';

/**
 * ADD's extras over COPY: a local tar archive (plain, gzip, bzip2, xz or zstd) is unpacked into
 * the destination, and a URL is downloaded (verified against --checksum when given).
 */

const MAGIC = {
  gzip: Buffer.from([0x1f, 0x8b]),
  bzip2: Buffer.from('BZh'),
  xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
};

type Compression = keyof typeof MAGIC | 'none';

async function head(file: string, n: number): Promise<Buffer> {
  const fh = await fsp.open(file);
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function compressionOf(h: Buffer): Compression {
  for (const [k, m] of Object.entries(MAGIC)) if (h.subarray(0, m.length).equals(m)) return k as Compression;
  return 'none';
}

/**
 * The uncompressed bytes of a file; bzip2 and xz through Debian's own tools, which node lacks.
 *
 * The decompressor's stdout is piped into the returned stream at once, not handed out raw:
 * callers await (an lstat, a header read) before they start reading, and when a child exits
 * node resumes every stdio stream nobody reads yet, dropping its buffered output
 * (child_process flushStdio). A small archive decompresses within that window, so apply used
 * to read an empty stream, which is a valid empty tar. The returned stream ends only after
 * the child has exited with status 0: `'close'` comes after stdout's `'end'`, so a failure
 * reported through the exit status (xz on trailing garbage, a truncated second bzip2 stream)
 * would otherwise arrive after the reader had already finished.
 */
function uncompressedStream(file: string, c: Compression): Readable {
  if (c === 'bzip2' || c === 'xz') {
    const child = childProcess().spawn(c === 'bzip2' ? 'bzip2' : 'xz', ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<Error | undefined>((resolve) => {
      child.once('error', (e) => resolve(new UnavailableError(`ADD ${path.basename(file)}: ${c} is not installed (${e.message})`)));
      child.once('close', (code, signal) => {
        const how = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
        resolve(code === 0 ? undefined : new InvalidArgumentError(`ADD ${path.basename(file)}: ${c} could not decompress it (${how}): ${err.trim()}`));
      });
    });
    const out = new Transform({
      transform: (chunk: Buffer, _enc, cb) => cb(null, chunk),
      flush: (cb) => void exited.then((e) => cb(e ?? null)),
    });
    void exited.then((e) => e && out.destroy(e));
    // A reader that stops early destroys `out`; pipeline then closes stdout and the child gets
    // SIGPIPE. Errors reach the reader through `out`, so the pipeline's own promise is not needed.
    pipeline(child.stdout, out).catch(() => undefined);
    return out;
  }
  return Readable.from(decompressed(createReadStream(file)));
}

/** Whether a local file is a tar archive ADD unpacks: a ustar/GNU header, possibly compressed. */
export async function isArchive(file: string): Promise<boolean> {
  const st = await fsp.lstat(file);
  if (!st.isFile()) return false;
  const c = compressionOf(await head(file, 8));
  if (c === 'none' && st.size < 512) return false;
  let first = Buffer.alloc(0);
  try {
    for await (const chunk of uncompressedStream(file, c)) {
      first = Buffer.concat([first, chunk as Buffer]);
      if (first.length >= 512) break;
    }
  } catch {
    return false;
  }
  return first.length >= 512 && first.subarray(257, 262).toString('latin1') === 'ustar';
}

/**
 * Unpacks a local archive into `dir` as docker's ADD does (the snapshotter's apply with archive
 * rules: paths and the archive's own links resolve inside `dir`, nothing lands outside; owners
 * recorded in the archive are kept when we run as root).
 */
export async function extractArchive(file: string, dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await apply(uncompressedStream(file, compressionOf(await head(file, 8))), dir, { rules: 'archive' });
}

/**
 * The file name ADD gives a download: the last segment of the URL's decoded path, as BuildKit
 * takes path.Base of it. Decoding comes first, so `..%2F..%2Ftmp%2Fx` names `x`: a name never
 * holds a slash and is never `.` or `..`, and the file lands in the download's own directory.
 */
export function downloadName(u: URL): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(u.pathname);
  } catch {
    decoded = u.pathname; // malformed %-escapes: the raw segment, still a plain name below
  }
  const name = path.posix.basename(decoded.replace(/\/+$/, ''));
  return name === '' || name === '.' || name === '..' || name.includes('\0') ? 'index.html' : name;
}

/** A download that sends nothing for this long has stalled (a server dripping nothing holds no build forever). */
const DOWNLOAD_STALL_MS = 60_000;

/**
 * Downloads a URL to `dir/<name>` (name: see downloadName), mode 0600 and mtime from
 * Last-Modified as docker does. With `checksum` (`sha256:…`) the content must match. The file is
 * created new (O_EXCL: no existing entry, and no symlink, is ever written through) in `dir`,
 * which must be a fresh directory of this build's.
 */
export async function download(url: string, dir: string, checksum: string | undefined, signal?: AbortSignal, stallMs = DOWNLOAD_STALL_MS): Promise<string> {
  const u = new URL(url);
  const name = downloadName(u);
  if (checksum !== undefined && !/^sha256:[a-f0-9]{64}$/.test(checksum)) throw new InvalidArgumentError(`ADD --checksum=${checksum}: want sha256:<64 hex digits>`);
  const stall = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const armStall = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(new UnavailableError(`ADD ${url}: the server sent nothing for ${Math.round(stallMs / 1000)} s`)), stallMs);
  };
  const aborted = signal ? AbortSignal.any([signal, stall.signal]) : stall.signal;
  armStall();
  try {
    let res: Response;
    try {
      res = await fetch(u, { redirect: 'follow', signal: aborted });
    } catch (e) {
      if (stall.signal.aborted) throw stall.signal.reason;
      throw new UnavailableError(`ADD ${url}: ${(e as Error).message}${(e as { cause?: Error }).cause ? `: ${(e as { cause: Error }).cause.message}` : ''}`);
    }
    if (!res.ok || !res.body) throw new UnavailableError(`ADD ${url}: the server answered ${res.status} ${res.statusText}`);
    await fsp.mkdir(dir, { recursive: true });
    const out = path.join(dir, name);
    const hash = crypto().createHash('sha256');
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (c: Buffer) => {
      armStall();
      hash.update(c);
    });
    try {
      await pipeline(body, createWriteStream(out, { flags: 'wx', mode: 0o600 }));
    } catch (e) {
      await fsp.rm(out, { force: true });
      if (stall.signal.aborted) throw stall.signal.reason;
      throw e;
    }
    const got = `sha256:${hash.digest('hex')}`;
    if (checksum !== undefined && got !== checksum) {
      await fsp.rm(out, { force: true });
      throw new DataLossError(`ADD ${url}: checksum mismatch: want ${checksum}, got ${got}`);
    }
    await fsp.chmod(out, 0o600);
    const lm = res.headers.get('last-modified');
    if (lm && !Number.isNaN(Date.parse(lm))) await fsp.utimes(out, new Date(Date.parse(lm)), new Date(Date.parse(lm)));
    return out;
  } finally {
    clearTimeout(timer);
  }
}
