import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type tarStream from 'tar-stream';
import {
  DataLossError,
  InvalidArgumentError,
  MediaType,
  digestHex,
  familiarReference,
  isIndexMediaType,
  layerCompression,
  parseReference,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
  crypto,
} from '@tsbuild/oci';
import type { Store } from './store.js';
import { normaliseName } from './image-names.js';
import { writeOutputFile } from './output-file.js';

/** image-spec annotations: the tag (as skopeo writes it) and the full name (as containerd writes it). */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';

type Pack = ReturnType<typeof tarStream.pack>;

/** Fixed mtime so that saving the same images twice gives the same bytes. */
const EPOCH = new Date(0);

/**
 * Writes `images` as one archive at `out`:
 * - 'oci-archive': a tar of an OCI image layout (oci-layout, index.json, blobs/<alg>/<hex>),
 *   every blob as stored, so manifest digests are kept;
 * - 'docker-archive': the `docker save` format (manifest.json, repositories, `<configHex>.json`
 *   byte-identical to the stored config so the image ID is kept, and each layer as an
 *   uncompressed `<diffIDHex>.tar` whose sha256 equals its diffID: a plain-tar layer is copied
 *   as stored, a compressed one decompressed).
 * The archive is written to a temp file beside `out` and renamed at the end: `out` is never torn
 * (writeOutputFile).
 */
export async function saveArchive(
  store: Store,
  images: { name?: string; descriptor: Descriptor }[],
  out: string,
  format: 'oci-archive' | 'docker-archive',
): Promise<void> {
  if (images.length === 0) throw new InvalidArgumentError(`nothing to save to ${out}: no images given`);
  if (format !== 'oci-archive' && format !== 'docker-archive') {
    throw new InvalidArgumentError(`unknown archive format "${String(format)}": want oci-archive or docker-archive`);
  }
  // tar-stream loads only when an archive is written: other commands share this module's chunk.
  const { default: tar } = await import('tar-stream');
  await writeOutputFile(out, async (file) => {
    const pack = tar.pack();
    const written = pipeline(pack, file);
    // Awaited below; a failed write rejects it while an entry is still being packed.
    written.catch(() => undefined);
    try {
      if (format === 'oci-archive') await packOciLayout(store, images, pack);
      else await packDockerArchive(store, images, pack);
      pack.finalize();
      await written;
    } catch (e) {
      pack.destroy(e as Error);
      await written.catch(() => undefined);
      throw e;
    }
  });
}

async function packOciLayout(store: Store, images: { name?: string; descriptor: Descriptor }[], pack: Pack): Promise<void> {
  await addBuffer(pack, 'oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  await addDir(pack, 'blobs/');
  await addDir(pack, 'blobs/sha256/');
  const seen = new Set<Digest>();
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  for (const img of images) {
    for (const d of await reachable(store, img.descriptor)) {
      if (seen.has(d)) continue;
      seen.add(d);
      const info = await store.content.info(d);
      if (info === undefined) throw new DataLossError(`cannot save: blob ${d} is missing from ${store.root}`);
      await addStream(pack, `blobs/sha256/${digestHex(d)}`, info.size, await store.content.read(d));
    }
    const entry: Descriptor = { mediaType: img.descriptor.mediaType, digest: img.descriptor.digest, size: img.descriptor.size };
    if (img.descriptor.platform !== undefined) entry.platform = img.descriptor.platform;
    if (img.name !== undefined) {
      const full = normaliseName(img.name);
      const tag = parseReference(full).tag ?? 'latest';
      entry.annotations = { [ANNOTATION_IMAGE_NAME]: full, [ANNOTATION_REF_NAME]: tag };
    }
    index.manifests.push(entry);
  }
  await addBuffer(pack, 'index.json', Buffer.from(JSON.stringify(index)));
}

/** The digest of `root` and of every blob it references, in the order a reader wants them. */
async function reachable(store: Store, root: Descriptor): Promise<Digest[]> {
  const out: Digest[] = [];
  const visit = async (d: Descriptor): Promise<void> => {
    if (isIndexMediaType(d.mediaType)) {
      const idx = await store.readJSON<ImageIndex>(d.digest);
      for (const m of idx.manifests) await visit(m);
    } else {
      const m = await store.readJSON<ImageManifest>(d.digest);
      out.push(m.config.digest, ...m.layers.map((l) => l.digest));
    }
    out.push(d.digest);
  };
  await visit(root);
  return out;
}

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

async function packDockerArchive(store: Store, images: { name?: string; descriptor: Descriptor }[], pack: Pack): Promise<void> {
  const manifest: DockerManifestEntry[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const seen = new Set<string>();
  // A compressed layer is decompressed once into the store's tmp/ so its size is known for the
  // tar header; a plain-tar layer (what builds store) is its own size and goes straight in.
  const scratch = await mkdtemp(join(store.root, 'tmp', 'save-'));
  try {
    for (const img of images) {
      const image = store.image(img.descriptor);
      const configDesc = await image.configDescriptor();
      const configName = `${digestHex(configDesc.digest)}.json`;
      if (!seen.has(configName)) {
        seen.add(configName);
        await addStream(pack, configName, configDesc.size, await store.content.read(configDesc.digest));
      }
      const layerNames: string[] = [];
      for (const layer of await image.layers()) {
        const name = `${digestHex(layer.diffID)}.tar`;
        layerNames.push(name);
        if (seen.has(name)) continue;
        seen.add(name);
        if (layerCompression(layer.mediaType) === 'none') {
          // The store verified the blob against its digest when it was written: that digest is the diffID.
          if (layer.digest !== layer.diffID) {
            throw new DataLossError(`layer ${layer.digest} is a plain tar, but the config lists diffID ${layer.diffID}`);
          }
          await addStream(pack, name, layer.size, await layer.uncompressed());
          continue;
        }
        const file = join(scratch, name);
        const hash = crypto().createHash('sha256');
        await pipeline(
          await layer.uncompressed(),
          new Transform({
            transform(chunk: Buffer, _enc, cb) {
              hash.update(chunk);
              cb(null, chunk);
            },
          }),
          createWriteStream(file),
        );
        const diffID = `sha256:${hash.digest('hex')}`;
        if (diffID !== layer.diffID) {
          throw new DataLossError(`layer ${layer.digest} uncompresses to ${diffID}, but the config lists diffID ${layer.diffID}`);
        }
        const { size } = await stat(file);
        await addStream(pack, name, size, createReadStream(file));
        await rm(file);
      }
      const repoTags: string[] = [];
      if (img.name !== undefined) {
        const ref = parseReference(normaliseName(img.name));
        repoTags.push(familiarReference(ref));
        const repo = familiarReference({ domain: ref.domain, path: ref.path });
        const top = layerNames.at(-1);
        if (top !== undefined) (repositories[repo] ??= {})[ref.tag ?? 'latest'] = top.slice(0, -'.tar'.length);
      }
      manifest.push({ Config: configName, RepoTags: repoTags, Layers: layerNames });
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  await addBuffer(pack, 'manifest.json', Buffer.from(JSON.stringify(manifest)));
  await addBuffer(pack, 'repositories', Buffer.from(JSON.stringify(repositories)));
}

function addBuffer(pack: Pack, name: string, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: buf.length, mode: 0o644, mtime: EPOCH }, buf, (err) => (err ? reject(err) : resolve()));
  });
}

function addDir(pack: Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, type: 'directory', mode: 0o755, mtime: EPOCH }, (err) => (err ? reject(err) : resolve()));
  });
}

/** Streams `src` into one tar entry of `size` bytes; tar-stream fails the entry if the size is off. */
function addStream(pack: Pack, name: string, size: number, src: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry({ name, size, mode: 0o644, mtime: EPOCH }, (err) => (err ? reject(err) : resolve()));
    src.on('error', (e) => {
      entry.destroy(e);
      reject(e);
    });
    src.pipe(entry as unknown as NodeJS.WritableStream);
  });
}
