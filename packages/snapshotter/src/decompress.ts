import { pipeline, Readable, Transform } from 'node:stream';
import type { Decompress } from 'fzstd';
import { zlib } from '@tsbuild/oci';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** zlib's default output chunk is 16 KiB; bigger chunks mean fewer stream hops per layer. */
const GUNZIP_CHUNK = 256 * 1024;

/**
 * The uncompressed bytes of a layer, whatever its compression: gzip and zstd are recognised by
 * their magic numbers (RFC 1952, RFC 8878), anything else is taken to be a plain tar. Layers
 * are identified by media type elsewhere; sniffing here lets `apply` take any of them.
 */
export async function* decompressed(layer: Readable): AsyncGenerator<Buffer> {
  const it = (layer as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < ZSTD_MAGIC.length) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, r.value]);
  }
  const raw = Readable.from(
    (async function* () {
      if (head.length > 0) yield head;
      if (!ended) for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    })(),
    { objectMode: false },
  );
  let out: Readable;
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) out = pipeline(raw, zlib().createGunzip({ chunkSize: GUNZIP_CHUNK }), () => undefined);
  else if (head.subarray(0, 4).equals(ZSTD_MAGIC)) out = pipeline(raw, await zstdDecompressor(), () => undefined);
  else out = raw;
  yield* out as AsyncIterable<Buffer>;
}

/** fzstd loads with the first zstd layer: it builds its decoding tables as it loads. */
async function zstdDecompressor(): Promise<Transform> {
  const { Decompress } = await import('fzstd');
  let push: (b: Buffer) => void = () => undefined;
  const d: Decompress = new Decompress((chunk) => push(Buffer.from(chunk)));
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      push = (b) => this.push(b);
      try {
        d.push(chunk);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    flush(cb) {
      push = (b) => this.push(b);
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}
