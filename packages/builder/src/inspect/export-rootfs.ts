import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type tarStream from 'tar-stream';
import type { Image } from '@tsbuild/store';
import { flattenImage } from './layer-diff.js';
import { openLayerTar, scanLayerTar } from './layer-entries.js';

const TYPE_BITS: Record<string, number> = { file: 0o100000, hardlink: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000 };

/**
 * Writes the image's flattened filesystem to `out` as one tar, without whiteouts: what a
 * container started from the image sees. Streams in two passes over the layers, no mount and
 * no scratch space: the first finds, per path, the layer whose entry is visible; the second
 * copies exactly those entries, layer by layer, so bodies go straight from layer to output.
 * Entries come in layer order, so a directory from a later layer may follow files below it;
 * tar extraction handles that (it creates parents, then applies the directory's metadata).
 */
export async function exportRootfs(image: Image, out: Writable, opts: { onProgress?: (e: { layer: number; layers: number }) => void } = {}): Promise<{ entries: number }> {
  const tree = await flattenImage(image);
  const layers = await image.layers();
  const { default: tar } = await import('tar-stream'); // loaded when used: builds share this chunk
  const pack = tar.pack();
  const written = pipeline(pack, out);
  let entries = 0;
  try {
    for (const [i, layer] of layers.entries()) {
      await scanLayerTar(await openLayerTar(layer), `layer ${i} (${layer.digest})`, async ({ entry, header, body }) => {
        if (entry.kind !== 'file') return false;
        const node = tree.get(entry.meta.path);
        if (node === undefined || node.layer !== i) return false;
        // A hard link to a path that a later layer replaced or deleted has nothing to point at any more.
        if (entry.meta.type === 'hardlink' && tree.get(entry.meta.linkname ?? '') === undefined) return false;
        const h: tarStream.Header = {
          name: entry.meta.type === 'dir' ? `${entry.meta.path}/` : entry.meta.path,
          type: header.type ?? 'file',
          // With the file-type bits set, tar-stream keeps a mode of 0 (it replaces a falsy mode with
          // 0644/0755) and still writes only the permission bits (it masks with 07777).
          mode: entry.meta.mode | (TYPE_BITS[entry.meta.type] ?? 0o100000),
          uid: entry.meta.uid,
          gid: entry.meta.gid,
          size: entry.meta.size,
          mtime: header.mtime ?? new Date(0),
          uname: header.uname ?? '',
          gname: header.gname ?? '',
          devmajor: header.devmajor ?? 0,
          devminor: header.devminor ?? 0,
          linkname: entry.meta.linkname ?? '',
        };
        entries++;
        if (entry.meta.type !== 'file' || entry.meta.size === 0) {
          await new Promise<void>((resolve, reject) => pack.entry(h, (e) => (e ? reject(e) : resolve())));
          return false;
        }
        const sink = pack.entry(h);
        await pipeline(body, sink);
        return true;
      });
      opts.onProgress?.({ layer: i, layers: layers.length });
    }
    pack.finalize();
  } catch (e) {
    pack.destroy(e as Error);
    await written.catch(() => undefined);
    throw e;
  }
  await written;
  return { entries };
}
