import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DataLossError, InvalidArgumentError } from '@tsbuild/oci';
import { END_OF_ARCHIVE, TarParser, encodeHeader, padding, type TarHeader } from '@tsbuild/snapshotter';
import type { Image } from '@tsbuild/store';
import { flattenImage } from './layer-diff.js';
import { normalisePath, openLayerTar } from './layer-entries.js';

/**
 * Writes the image's flattened filesystem to `out` as one tar, without whiteouts: what a
 * container started from the image sees. Streams in two passes over the layers, no mount and
 * no scratch space: the first finds, per path, the layer whose entry is visible; the second
 * copies exactly those entries, layer by layer, so bodies go straight from layer to output.
 * Entries come in layer order, so a directory from a later layer may follow files below it;
 * tar extraction handles that (it creates parents, then applies the directory's metadata).
 *
 * The second pass reads and writes with the snapshotter's tar code, which keeps pax records
 * byte for byte: xattrs (SCHILY.xattr.*, binary ones such as security.capability included)
 * come out as the layers carry them.
 */
export async function exportRootfs(image: Image, out: Writable, opts: { onProgress?: (e: { layer: number; layers: number }) => void } = {}): Promise<{ entries: number }> {
  const tree = await flattenImage(image, { hashes: false });
  const layers = await image.layers();
  // The tar goes out through a Readable so that `out` gets the usual pipeline treatment (ended,
  // errors passed back); `wanted` resolves when it asks for more after a full buffer.
  let wanted: (() => void) | undefined;
  const tar = new Readable({ highWaterMark: 4 << 20, read: () => wanted?.() });
  const written = pipeline(tar, out);
  // Awaited at the end; `out` failing (disk full) rejects it while a layer is being read, and an
  // unhandled rejection there would end the process with a stack trace.
  written.catch(() => undefined);
  let full = false;
  const put = (b: Buffer): void => {
    if (!tar.push(b)) full = true;
  };
  let entries = 0;
  try {
    for (const [i, layer] of layers.entries()) {
      let current: TarHeader | undefined;
      const parser = new TarParser({
        entry(h) {
          current = undefined;
          const path = normalisePath(h.name);
          const node = tree.get(path);
          if (node === undefined || node.layer !== i) return; // hidden, deleted, a whiteout, or the root
          const linkname = h.type === 'link' ? normalisePath(h.linkname) : h.linkname;
          // A hard link to a path that a later layer replaced or deleted has nothing to point at any more.
          if (h.type === 'link' && tree.get(linkname) === undefined) return;
          current = { ...h, name: h.type === 'dir' ? `${path}/` : path, linkname };
          entries++;
          put(encodeHeader(current));
        },
        data(chunk) {
          // A view into the layer's chunk, which nothing reuses: no copy needed.
          if (current !== undefined) put(chunk);
        },
        end() {
          if (current !== undefined && current.type === 'file' && padding(current.size) > 0) put(Buffer.alloc(padding(current.size)));
        },
      });
      try {
        for await (const chunk of await openLayerTar(layer)) {
          parser.push(chunk as Buffer);
          if (full) {
            await Promise.race([new Promise<void>((resolve) => (wanted = resolve)), written]);
            full = false;
          }
        }
        parser.finish();
      } catch (e) {
        if (e instanceof InvalidArgumentError) throw new DataLossError(`layer ${i} (${layer.digest}): ${e.message}`, { cause: e });
        throw e;
      }
      opts.onProgress?.({ layer: i, layers: layers.length });
    }
    tar.push(END_OF_ARCHIVE);
    tar.push(null);
  } catch (e) {
    tar.destroy(e as Error);
    await written.catch(() => undefined);
    throw e;
  }
  await written;
  return { entries };
}
