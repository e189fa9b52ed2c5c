import { InvalidArgumentError } from '@tsbuild/oci';
import { BLOCK, decodeBlock, padding, parsePax, type TarHeader, type TarTime, type TarType } from './tar-format.js';

/** What a TarParser reports, synchronously and in stream order. */
export interface TarSink {
  /** An entry's headers were read; for a file, its body follows through `data`, then `end`. */
  entry(h: TarHeader): void;
  /** The next bytes of the current file's body (a view into the pushed chunk: copy to keep it). */
  data(chunk: Buffer): void;
  /** The current entry is complete. */
  end(): void;
}

/**
 * The most a pax extended header ('x', 'g') or a GNU long name or long link ('L', 'K') may hold,
 * and the most the pax records in force for one entry (global plus local) may add up to. These
 * bodies are kept in memory before the entry they describe, so without a bound a few KB of gzip
 * declaring a 1 GiB pax header make us allocate gigabytes. Go's archive/tar, which writes most
 * layers in the wild, caps them the same way (maxSpecialFileSize = 1 MiB, reader.go): a layer it
 * could read, we read.
 */
export const MAX_META_SIZE = 1 << 20;

const META_KIND: Record<string, string> = { x: 'pax header', g: 'global pax header', L: 'GNU long name', K: 'GNU long link name' };

const TYPES: Record<string, TarType> = { '0': 'file', '7': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

type State =
  | { kind: 'header' }
  | { kind: 'meta'; typeflag: string; size: number; parts: Buffer[]; got: number }
  | { kind: 'body'; left: number; skipAfter: number }
  | { kind: 'skip'; left: number }
  | { kind: 'done' };

/**
 * A push parser for tar streams (ustar, pax, GNU long names): feed it chunks with `push`, call
 * `finish` at the end of the stream. Everything happens synchronously inside `push`, so a
 * consumer that writes files with sync calls handles a whole chunk per event-loop turn instead
 * of awaiting once per entry and per body piece. Pax `path`, `linkpath`, `uid`, `gid`, `size`,
 * `mtime`, `atime` and `SCHILY.xattr.*` override the ustar fields; global pax headers apply to
 * every later entry. After the first zero block (end of archive) the rest is ignored.
 */
export class TarParser {
  private state: State = { kind: 'header' };
  /** A header block split across chunks. */
  private partial: Buffer | undefined;
  private global = new Map<string, Buffer>();
  private local = new Map<string, Buffer>();
  /** Bytes held in `global` and `local` (keys and values), bounded by MAX_META_SIZE together. */
  private paxBytes = { global: 0, local: 0 };
  private longName: string | undefined;
  private longLink: string | undefined;
  private index = 0;
  private where = 'at entry 0';

  constructor(private readonly sink: TarSink) {}

  /** True once the end-of-archive block was seen. */
  get ended(): boolean {
    return this.state.kind === 'done';
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const st = this.state;
      switch (st.kind) {
        case 'done':
          return;
        case 'header': {
          let block: Buffer;
          if (this.partial === undefined && chunk.length - off >= BLOCK) {
            block = chunk.subarray(off, off + BLOCK);
            off += BLOCK;
          } else {
            const have = this.partial?.length ?? 0;
            const take = Math.min(BLOCK - have, chunk.length - off);
            const piece = chunk.subarray(off, off + take);
            this.partial = this.partial === undefined ? Buffer.from(piece) : Buffer.concat([this.partial, piece]);
            off += take;
            if (this.partial.length < BLOCK) return;
            block = this.partial;
            this.partial = undefined;
          }
          this.header(block);
          break;
        }
        case 'meta': {
          const take = Math.min(st.size - st.got, chunk.length - off);
          st.parts.push(chunk.subarray(off, off + take));
          st.got += take;
          off += take;
          if (st.got === st.size) this.meta(st.typeflag, Buffer.concat(st.parts));
          break;
        }
        case 'body': {
          const take = Math.min(st.left, chunk.length - off);
          if (take > 0) this.sink.data(chunk.subarray(off, off + take));
          st.left -= take;
          off += take;
          if (st.left === 0) {
            this.sink.end();
            this.state = st.skipAfter > 0 ? { kind: 'skip', left: st.skipAfter } : { kind: 'header' };
          }
          break;
        }
        case 'skip': {
          const take = Math.min(st.left, chunk.length - off);
          st.left -= take;
          off += take;
          if (st.left === 0) this.state = { kind: 'header' };
          break;
        }
      }
    }
  }

  /** The stream ended: fine at an entry boundary (with or without end-of-archive blocks), an error inside one. */
  finish(): void {
    const k = this.state.kind;
    if (k === 'done' || (k === 'header' && this.partial === undefined)) return;
    throw new InvalidArgumentError(`layer is not a valid tar: unexpected end of data ${this.where}`);
  }

  private header(block: Buffer): void {
    this.where = `at entry ${this.index}`;
    const raw = decodeBlock(block, this.where);
    if (raw === undefined) {
      this.state = { kind: 'done' };
      return;
    }
    const tf = raw.typeflag;
    if (tf === 'x' || tf === 'g' || tf === 'L' || tf === 'K') {
      if (raw.size > MAX_META_SIZE) {
        throw new InvalidArgumentError(`layer is not a valid tar: ${META_KIND[tf]} of ${raw.size} bytes ${this.where} "${raw.name}" (the limit is ${MAX_META_SIZE})`);
      }
      this.state = { kind: 'meta', typeflag: tf, size: raw.size, parts: [], got: 0 };
      if (raw.size === 0) this.meta(tf, Buffer.alloc(0));
      return;
    }
    const pax = this.global.size === 0 ? this.local : new Map([...this.global, ...this.local]);
    this.local = new Map();
    this.paxBytes.local = 0;
    const name = pax.get('path')?.toString('utf8') ?? this.longName ?? raw.name;
    const linkname = pax.get('linkpath')?.toString('utf8') ?? this.longLink ?? raw.linkname;
    this.longName = undefined;
    this.longLink = undefined;
    const size = paxNumber(pax, 'size') ?? raw.size;
    let type = TYPES[tf];
    if (type === 'file' && name.endsWith('/')) type = 'dir'; // pre-POSIX tars mark directories by the slash
    this.where = `at entry ${this.index} "${name}"`;
    this.index++;
    const pad = padding(size);
    if (type === undefined) {
      if (tf === 'S') throw new InvalidArgumentError(`GNU sparse files are not supported ${this.where}`);
      this.toSkip(size + pad); // volume labels and other metadata-only types
      return;
    }
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const bodySize = type === 'file' ? size : 0;
    const h: TarHeader = {
      name,
      type,
      mode: raw.mode & 0o7777,
      uid: paxNumber(pax, 'uid') ?? raw.uid,
      gid: paxNumber(pax, 'gid') ?? raw.gid,
      size: bodySize,
      mtime: raw.mtime,
      linkname,
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs,
    };
    const mtime = paxTime(pax, 'mtime');
    if (mtime !== undefined) {
      h.mtime = mtime.sec;
      if (mtime.nsec !== 0) h.mtimeNsec = mtime.nsec;
    }
    const atime = paxTime(pax, 'atime');
    if (atime !== undefined) h.atime = atime;
    this.sink.entry(h);
    // A non-file entry that (wrongly) carries a size: its bytes are skipped, not handed over.
    if (bodySize > 0) this.state = { kind: 'body', left: bodySize, skipAfter: pad };
    else {
      this.sink.end();
      this.toSkip(size + pad);
    }
  }

  private meta(typeflag: string, body: Buffer): void {
    if (typeflag === 'x' || typeflag === 'g') {
      const scope = typeflag === 'x' ? 'local' : 'global';
      const map = this[scope];
      for (const [k, v] of parsePax(body, this.where)) {
        const old = map.get(k);
        this.paxBytes[scope] += k.length + v.length - (old === undefined ? 0 : k.length + old.length);
        map.set(k, v);
      }
      // Many headers in a row, each under the limit, must not add up past it either.
      if (this.paxBytes.global + this.paxBytes.local > MAX_META_SIZE) {
        throw new InvalidArgumentError(`layer is not a valid tar: pax records add up to more than ${MAX_META_SIZE} bytes ${this.where}`);
      }
    } else if (typeflag === 'L') this.longName = cut(body);
    else this.longLink = cut(body);
    this.toSkip(padding(body.length));
  }

  private toSkip(n: number): void {
    this.state = n > 0 ? { kind: 'skip', left: n } : { kind: 'header' };
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

/**
 * A pax time record ("1600000000.123456789", "-1.5"), split exactly into seconds and
 * nanoseconds: a double cannot hold both (POSIX pax: "seconds since the epoch ... with a
 * decimal point and any number of fractional digits").
 */
function paxTime(pax: Map<string, Buffer>, key: string): TarTime | undefined {
  const v = pax.get(key);
  if (v === undefined) return undefined;
  const s = v.toString('latin1');
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (m === null) throw new InvalidArgumentError(`layer is not a valid tar: bad pax ${key} "${s}"`);
  const whole = Number(m[2]);
  const frac = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (m[1] !== '-') return { sec: whole, nsec: frac };
  // -1.5 s is 1.5 s before the epoch: second -2, plus 0.5 s.
  return frac === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1_000_000_000 - frac };
}
