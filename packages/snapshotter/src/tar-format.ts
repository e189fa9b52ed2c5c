import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * The tar headers of a layer (POSIX.1-2001 ustar + pax extended headers), encoded and decoded
 * here rather than through tar-stream: tar-stream builds and parses pax records as UTF-8
 * strings, which corrupts binary values such as `SCHILY.xattr.security.capability` (a
 * vfs_cap_data struct). Go's archive/tar, which writes most layers in the wild, stores those
 * bytes raw, so we must too.
 */
export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** Relative path; directories end in '/'. */
  name: string;
  type: TarType;
  /** Permission bits including setuid/setgid/sticky (no file-type bits). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds since the epoch (the ustar field, or the integer part of a pax `mtime`). */
  mtime: number;
  /** Nanoseconds past `mtime`, when a pax `mtime` record carried a fraction (read only; never written). */
  mtimeNsec?: number;
  /** Access time from a pax `atime` record (GNU tar --format=posix writes it; read only). */
  atime?: TarTime;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** xattr name → raw value (pax `SCHILY.xattr.<name>`). */
  xattrs: Map<string, Buffer>;
}

/** A time as the kernel keeps it: whole seconds (may be negative) and 0..999 999 999 ns. */
export interface TarTime {
  sec: number;
  nsec: number;
}

export const BLOCK = 512;

const TYPEFLAG: Record<TarType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/** Bytes of the headers (a pax header first when needed) that precede the entry's body. */
export function encodeHeader(h: TarHeader): Buffer {
  const plan = planHeader(h);
  const out = Buffer.allocUnsafe(plannedLength(plan));
  writePlanned(plan, out, 0);
  return out;
}

/**
 * Writes the same bytes as encodeHeader(h) into `out` at `offset`, without allocating, and
 * returns their length; returns 0 and writes nothing when they do not fit before the end of
 * `out` (the layer writer then starts a new output chunk).
 */
export function writeHeader(h: TarHeader, out: Buffer, offset: number): number {
  const plan = planHeader(h);
  const length = plannedLength(plan);
  if (offset + length > out.length) return 0;
  writePlanned(plan, out, offset);
  return length;
}

/** Zero bytes that round a body of `size` bytes up to a whole block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Two zero blocks end an archive (POSIX ustar). */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

interface UstarFields {
  name: string; prefix: string; mode: number; uid: number; gid: number; size: number; mtime: number;
  typeflag: string; linkname: string; devmajor: number; devminor: number;
}

/** An entry's headers decided but not yet written: the pax records (if any) and the ustar block. */
interface HeaderPlan {
  pax: [string, Buffer][];
  /** Bytes of the pax records, before padding. */
  paxLength: number;
  ustar: UstarFields;
}

function planHeader(h: TarHeader): HeaderPlan {
  const pax: [string, Buffer][] = [];
  let name = h.name;
  let prefix = '';
  const split = splitUstarName(h.name);
  if (split === undefined) {
    pax.push(['path', Buffer.from(h.name)]);
    name = placeholder(h.name, 100);
  } else {
    [prefix, name] = split;
  }
  let linkname = h.linkname;
  if (!isAscii(linkname) || linkname.length > 100) {
    pax.push(['linkpath', Buffer.from(linkname)]);
    linkname = placeholder(linkname, 100);
  }
  let uid = h.uid;
  let gid = h.gid;
  if (uid > MAX_OCTAL_7) {
    pax.push(['uid', Buffer.from(String(uid))]);
    uid = 0;
  }
  if (gid > MAX_OCTAL_7) {
    pax.push(['gid', Buffer.from(String(gid))]);
    gid = 0;
  }
  let size = h.size;
  if (size > MAX_OCTAL_11) {
    pax.push(['size', Buffer.from(String(size))]);
    size = 0;
  }
  let mtime = Math.floor(h.mtime);
  if (mtime < 0 || mtime > MAX_OCTAL_11) {
    pax.push(['mtime', Buffer.from(String(mtime))]);
    mtime = 0;
  }
  if (h.xattrs.size > 0) {
    for (const [k, v] of [...h.xattrs].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
      pax.push([`SCHILY.xattr.${k}`, v]);
    }
  }
  let paxLength = 0;
  for (const [k, v] of pax) paxLength += paxRecordLength(k, v);
  const ustar = { name, prefix, mode: h.mode, uid, gid, size, mtime, typeflag: TYPEFLAG[h.type], linkname, devmajor: h.devmajor, devminor: h.devminor };
  return { pax, paxLength, ustar };
}

function plannedLength(p: HeaderPlan): number {
  return p.pax.length === 0 ? BLOCK : BLOCK + p.paxLength + padding(p.paxLength) + BLOCK;
}

function writePlanned(p: HeaderPlan, out: Buffer, offset: number): void {
  let off = offset;
  if (p.pax.length > 0) {
    const paxHeader = { name: 'PaxHeader', prefix: '', mode: 0o644, uid: 0, gid: 0, size: p.paxLength, mtime: p.ustar.mtime, typeflag: 'x', linkname: '', devmajor: 0, devminor: 0 };
    writeUstarBlock(paxHeader, out, off);
    off += BLOCK;
    for (const [k, v] of p.pax) off += writePaxRecord(k, v, out, off);
    const pad = padding(p.paxLength);
    out.fill(0, off, off + pad);
    off += pad;
  }
  writeUstarBlock(p.ustar, out, off);
}

function writeUstarBlock(f: UstarFields, b: Buffer, at: number): void {
  b.fill(0, at, at + BLOCK);
  b.write(f.name, at, 100, 'utf8');
  writeOctal(b, at + 100, 8, f.mode & 0o7777);
  writeOctal(b, at + 108, 8, f.uid);
  writeOctal(b, at + 116, 8, f.gid);
  writeOctal(b, at + 124, 12, f.size);
  writeOctal(b, at + 136, 12, f.mtime);
  b.write(f.typeflag, at + 156, 1, 'ascii');
  b.write(f.linkname, at + 157, 100, 'utf8');
  b.write('ustar\x0000', at + 257, 8, 'ascii');
  writeOctal(b, at + 329, 8, f.devmajor);
  writeOctal(b, at + 337, 8, f.devminor);
  b.write(f.prefix, at + 345, 155, 'utf8');
  // The checksum is computed with its own field read as eight spaces.
  b.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 8, 'ascii');
}

function writeOctal(b: Buffer, off: number, len: number, n: number): void {
  const s = Math.max(0, Math.floor(n)).toString(8);
  if (s.length > len - 1) {
    // Fields too small even after pax: devmajor/devminor. GNU base-256 (high bit set).
    b[off] = 0x80;
    let v = BigInt(Math.floor(n));
    for (let i = off + len - 1; i > off; i--) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return;
  }
  b.write(s.padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

/** "%d %s=%s\n" where %d counts the whole record, its own digits included. */
function paxRecordLength(key: string, value: Buffer): number {
  const rest = Buffer.byteLength(key) + value.length + 3;
  let len = rest + 1;
  while (len !== rest + String(len).length) len = rest + String(len).length;
  return len;
}

function writePaxRecord(key: string, value: Buffer, out: Buffer, at: number): number {
  const len = paxRecordLength(key, value);
  let off = at + out.write(`${len} ${key}=`, at, 'utf8');
  off += value.copy(out, off);
  out[off] = 0x0a;
  return len;
}

function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

function placeholder(s: string, max: number): string {
  return s.replace(/[^\x01-\x7f]/g, '_').slice(0, max);
}

function splitUstarName(name: string): [string, string] | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return ['', name];
  // The split must fall on a '/': prefix ≤ 155 bytes, name ≤ 100 bytes and not empty.
  const body = name.endsWith('/') ? name.slice(0, -1) : name;
  for (let i = body.indexOf('/'); i !== -1; i = body.indexOf('/', i + 1)) {
    if (i > 155) break;
    const rest = name.slice(i + 1);
    if (rest.length > 0 && rest.length <= 100) return [name.slice(0, i), rest];
  }
  return undefined;
}

// ---- decoding ----

/** A raw header block as read: typeflag plus ustar fields. Pax records are merged by the reader. */
export interface RawHeader {
  typeflag: string;
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** Parses one 512-byte header block; undefined for a zero block (end of archive). */
export function decodeBlock(b: Buffer, where: string): RawHeader | undefined {
  if (b.every((x) => x === 0)) return undefined;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const x = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += x;
    signed += x > 127 ? x - 256 : x;
  }
  const stored = parseNumeric(b, 148, 8);
  if (stored !== unsigned && stored !== signed) {
    throw new InvalidArgumentError(`layer is not a valid tar: bad header checksum ${where}`);
  }
  let name = cString(b, 0, 100);
  const magic = b.toString('latin1', 257, 263);
  if (magic === 'ustar\0') {
    const prefix = cString(b, 345, 155);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  return {
    typeflag: b[156] === 0 ? '0' : String.fromCharCode(b[156]!),
    name,
    mode: parseNumeric(b, 100, 8),
    uid: parseNumeric(b, 108, 8),
    gid: parseNumeric(b, 116, 8),
    size: parseNumeric(b, 124, 12),
    mtime: parseNumeric(b, 136, 12),
    linkname: cString(b, 157, 100),
    devmajor: parseNumeric(b, 329, 8),
    devminor: parseNumeric(b, 337, 8),
  };
}

function cString(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end === -1 || end > off + len ? off + len : end);
}

function parseNumeric(b: Buffer, off: number, len: number): number {
  if (b[off]! & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit of the first byte as a flag.
    let v = BigInt(b[off]! & 0x7f);
    for (let i = off + 1; i < off + len; i++) v = (v << 8n) | BigInt(b[i]!);
    return Number(v);
  }
  const s = b.toString('latin1', off, off + len).replace(/[\0 ]+$/g, '').replace(/^[\0 ]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new InvalidArgumentError(`layer is not a valid tar: bad number "${s}" in a header`);
  return parseInt(s, 8);
}

/** Parses a pax extended header body into key → raw value (values stay bytes). */
export function parsePax(body: Buffer, where: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < body.length) {
    if (body[off] === 0) break; // some writers pad the record area with NULs
    const sp = body.indexOf(0x20, off);
    const len = sp === -1 ? NaN : parseInt(body.toString('latin1', off, sp), 10);
    if (!Number.isInteger(len) || len <= 0 || off + len > body.length || body[off + len - 1] !== 0x0a) {
      throw new InvalidArgumentError(`layer is not a valid tar: malformed pax record ${where}`);
    }
    const rec = body.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new InvalidArgumentError(`layer is not a valid tar: pax record without '=' ${where}`);
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}
