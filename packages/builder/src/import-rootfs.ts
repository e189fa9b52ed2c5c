import { createReadStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { type Descriptor, type Digest, type ImageConfig, NotFoundError, type Platform, formatReference, hostPlatform, parseReference, isoTime } from '@tsbuild/oci';
import { type Store, ingestLayer, writeImage } from '@tsbuild/store';
import { decompressed, tarDirectory } from '@tsbuild/snapshotter';

export interface ImportOptions {
  /** Config changes, as `docker import --change` takes them (only ENV, CMD, WORKDIR for now). */
  env?: string[];
  cmd?: string[];
  sourceDateEpoch?: number;
  /** The platform the config records (docker import --platform); this machine's by default. */
  platform?: Platform;
}

/**
 * `tsbuild import TAR|DIR NAME`, like `docker import`: a root filesystem becomes a one-layer
 * image. A directory is archived as it is (owners, modes, xattrs kept); a tar (plain or gzip) is
 * taken as the layer's content (gzip and zstd are recognised). The layer is stored as a plain tar,
 * as builds store theirs: push compresses it once, when it first leaves.
 */
export async function importRootfs(store: Store, source: string, name: string, opts: ImportOptions = {}): Promise<{ imageId: Digest; manifest: Descriptor; name: string }> {
  const ref = formatReference(parseReference(name));
  const st = await fsp.stat(source).catch(() => undefined);
  if (!st) throw new NotFoundError(`import source ${source}: no such file or directory`);
  return store.withLock('shared', async () => {
    const tar: Readable = st.isDirectory() ? tarDirectory(source, epoch(opts)) : Readable.from(decompressed(createReadStream(source)));
    const layer = await ingestLayer(store.content, tar, { compression: 'none' });
    const created = isoTime(opts.sourceDateEpoch !== undefined ? opts.sourceDateEpoch * 1000 : Date.now());
    const p = opts.platform ?? hostPlatform();
    const config: ImageConfig = {
      created,
      architecture: p.architecture,
      os: p.os,
      ...(p.variant ? { variant: p.variant } : {}),
      config: {
        ...(opts.env ? { Env: opts.env } : {}),
        ...(opts.cmd ? { Cmd: opts.cmd } : {}),
      },
      rootfs: { type: 'layers', diff_ids: [layer.diffID] },
      history: [{ created, created_by: `tsbuild import ${st.isDirectory() ? 'dir' : 'tar'}`, comment: 'imported from a root filesystem' }],
    };
    const { descriptor: desc, configDigest } = await writeImage(store, config, [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }], { format: 'oci' });
    await store.setName(ref, desc);
    return { imageId: configDigest, manifest: desc, name: ref };
  });
}

function epoch(opts: ImportOptions): { sourceDateEpoch?: number } {
  return opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {};
}
