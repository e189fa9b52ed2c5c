import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from '@tsbuild/oci';
import { ingestLayer, type Store } from '@tsbuild/store';

export type FileSpec = [path: string, type: 'dir' | 'file', mode: number, content: string | Buffer];

export const FILES: FileSpec[] = [
  ['etc', 'dir', 0o755, ''],
  ['etc/hostname', 'file', 0o644, 'tsbuild-registry-test\n'],
  ['usr', 'dir', 0o755, ''],
  ['usr/bin', 'dir', 0o755, ''],
  ['usr/bin/hello', 'file', 0o755, '#!/bin/sh\necho hello\n'],
  ['data.bin', 'file', 0o600, Buffer.alloc(300_000, 7)],
];

export function layerTar(files: FileSpec[]): Readable {
  const pack = tar.pack();
  for (const [name, type, mode, body] of files) {
    if (type === 'dir') pack.entry({ name: `${name}/`, type: 'directory', mode });
    else pack.entry({ name, mode }, body);
  }
  pack.finalize();
  return pack as unknown as Readable;
}

/** A one- or two-layer image made through the store API, as packages/store tests make them. */
export async function makeImage(
  store: Store,
  opts: { files?: FileSpec[][]; architecture?: string; variant?: string; name?: string } = {},
): Promise<Descriptor> {
  const layers = [];
  for (const files of opts.files ?? [FILES]) layers.push(await ingestLayer(store.content, layerTar(files)));
  const cfg: ImageConfig = {
    created: '2024-01-01T00:00:00Z',
    architecture: opts.architecture ?? 'amd64',
    ...(opts.variant !== undefined ? { variant: opts.variant } : {}),
    os: 'linux',
    config: { Cmd: ['/usr/bin/hello'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
  };
  const config = await store.putJSON(cfg, MediaType.OciConfig);
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: layers.map((l) => ({ mediaType: MediaType.OciLayerGzip, digest: l.digest, size: l.size })),
  };
  const d = await store.putJSON(m, MediaType.OciManifest);
  if (opts.name !== undefined) await store.setName(opts.name, d);
  return d;
}
