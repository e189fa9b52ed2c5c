import { InvalidArgumentError } from '@tsbuild/oci';
import { BLOCK, decodeBlock, padding, parsePax, type TarHeader, type TarType } from './tar-format.js';

/** One entry of a tar stream. `body` must be read (or left) before asking for the next entry. */
export interface TarEntry extends TarHeader {
  body: AsyncIterable<Buffer>;
}

const TYPES: Record<string, TarType> = { '0': 'file', '7': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

/** Pulls exact byte counts out of a chunked stream without copying bodies. */
class ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    if (r.value.length > 0) {
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
    return true;
  }

  /** Exactly n bytes, or undefined at a clean end of stream. */
  async read(n: number, where: string): Promise<Buffer | undefined> {
    while (this.buffered < n) if (!(await this.pull())) break;
    if (this.buffered === 0) return undefined;
    if (this.buffered < n) throw new InvalidArgumentError(`layer is not a valid tar: unexpected end of data ${where}`);
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Yields the next n bytes as they arrive. */
  async *take(n: number, where: string, progress: { left: number }): AsyncGenerator<Buffer> {
    progress.left = n;
    while (progress.left > 0) {
      if (this.chunks.length === 0 && !(await this.pull())) {
        throw new InvalidArgumentError(`layer is not a valid tar: unexpected end of data ${where}`);
      }
      const c = this.chunks[0];
      if (c === undefined) continue;
      const part = c.length <= progress.left ? c : c.subarray(0, progress.left);
      if (part.length === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(part.length);
      this.buffered -= part.length;
      progress.left -= part.length;
      yield part;
    }
  }

  async skip(n: number, where: string): Promise<void> {
    const p = { left: 0 };
    for await (const _ of this.take(n, where, p)) void _;
  }

  /** Reads to the end, so that whoever hashes the stream sees every byte. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }
}

/**
 * Reads a tar stream (ustar, pax, GNU long names) entry by entry. Pax `path`, `linkpath`, `uid`,
 * `gid`, `size`, `mtime` and `SCHILY.xattr.*` override the ustar fields; global pax headers
 * apply to every later entry. Ends after the end-of-archive blocks, consuming the rest.
 */
export async function* readTar(src: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const bytes = new ByteSource(src[Symbol.asyncIterator]());
  let global = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  let index = 0;
  for (;;) {
    const where = `at entry ${index}`;
    const block = await bytes.read(BLOCK, where);
    if (block === undefined) return;
    const raw = decodeBlock(block, where);
    if (raw === undefined) {
      await bytes.drain();
      return;
    }
    const bodyLen = raw.size;
    if (raw.typeflag === 'x' || raw.typeflag === 'g' || raw.typeflag === 'L' || raw.typeflag === 'K') {
      const body = bodyLen > 0 ? await bytes.read(bodyLen, where) : Buffer.alloc(0);
      if (body === undefined) throw new InvalidArgumentError(`layer is not a valid tar: unexpected end of data ${where}`);
      await bytes.skip(padding(bodyLen), where);
      if (raw.typeflag === 'x') local = new Map([...local, ...parsePax(body, where)]);
      else if (raw.typeflag === 'g') global = new Map([...global, ...parsePax(body, where)]);
      else if (raw.typeflag === 'L') longName = cut(body);
      else longLink = cut(body);
      continue;
    }
    const pax = new Map([...global, ...local]);
    local = new Map();
    const name = pax.get('path')?.toString('utf8') ?? longName ?? raw.name;
    const linkname = pax.get('linkpath')?.toString('utf8') ?? longLink ?? raw.linkname;
    longName = undefined;
    longLink = undefined;
    const size = paxNumber(pax, 'size') ?? raw.size;
    let type = TYPES[raw.typeflag];
    if (type === 'file' && name.endsWith('/')) type = 'dir'; // pre-POSIX tars mark directories by the slash
    const entryWhere = `at entry ${index} "${name}"`;
    index++;
    if (type === undefined) {
      if (raw.typeflag === 'S') throw new InvalidArgumentError(`GNU sparse files are not supported ${entryWhere}`);
      await bytes.skip(size + padding(size), entryWhere); // volume labels and other metadata-only types
      continue;
    }
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const bodySize = type === 'file' ? size : 0;
    const progress = { left: bodySize };
    yield {
      name,
      type,
      mode: raw.mode & 0o7777,
      uid: paxNumber(pax, 'uid') ?? raw.uid,
      gid: paxNumber(pax, 'gid') ?? raw.gid,
      size: bodySize,
      mtime: paxNumber(pax, 'mtime') ?? raw.mtime,
      linkname,
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs,
      body: bytes.take(bodySize, entryWhere, progress),
    };
    // Whatever the consumer left unread of the body, then the padding and any bytes of a
    // non-file entry that (wrongly) carries a size.
    await bytes.skip(progress.left + (size - bodySize) + padding(size), entryWhere);
  }
}

function cut(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul === -1 ? b.length : nul);
}

function paxNumber(pax: Map<string, Buffer>, key: string): number | undefined {
  const v = pax.get(key);
  if (v === undefined) return undefined;
  const n = Number(v.toString('latin1'));
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`layer is not a valid tar: bad pax ${key} "${v.toString('latin1')}"`);
  return n;
}
