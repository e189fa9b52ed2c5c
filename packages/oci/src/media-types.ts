import { InvalidArgumentError } from './errors.js';

/** Media types of the OCI image spec (v1.1) and Docker's image manifest v2 schema 2. */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciNondistributableLayer: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciNondistributableLayerGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciNondistributableLayerZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  /** An uncompressed layer in a Docker schema 2 manifest (the image spec's tar, under Docker's name). */
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

export function isManifestMediaType(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isIndexMediaType(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

/** How a layer blob of this media type is compressed, or undefined if it is not a layer type. */
export function layerCompression(mt: string): Compression | undefined {
  switch (mt) {
    case MediaType.OciLayer:
    case MediaType.DockerLayer:
    case MediaType.OciNondistributableLayer:
      return 'none';
    case MediaType.OciLayerGzip:
    case MediaType.DockerLayerGzip:
    case MediaType.DockerForeignLayerGzip:
    case MediaType.OciNondistributableLayerGzip:
      return 'gzip';
    case MediaType.OciLayerZstd:
    case MediaType.OciNondistributableLayerZstd:
      return 'zstd';
    default:
      return undefined;
  }
}

/**
 * The layer media type for a manifest format and compression. Docker schema 2 has a gzip and a
 * plain tar layer type, no zstd one.
 */
export function layerMediaType(format: 'oci' | 'docker', compression: Compression): string {
  if (format === 'docker') {
    if (compression === 'zstd') throw new InvalidArgumentError('docker schema 2 layers are gzip or plain tar: zstd needs an OCI manifest');
    return compression === 'gzip' ? MediaType.DockerLayerGzip : MediaType.DockerLayer;
  }
  return compression === 'gzip' ? MediaType.OciLayerGzip : compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
}

/** Docker schema 2's layer types and the image spec's names for the same bytes. */
const DOCKER_TO_OCI_LAYER: Readonly<Record<string, string>> = {
  [MediaType.DockerLayer]: MediaType.OciLayer,
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerForeignLayerGzip]: MediaType.OciNondistributableLayerGzip,
};
const OCI_TO_DOCKER_LAYER: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(DOCKER_TO_OCI_LAYER).map(([d, o]) => [o, d]));

/** The image spec's media type for a layer type: Docker's renamed, any other as it is. */
export function ociLayerMediaType(mt: string): string {
  return DOCKER_TO_OCI_LAYER[mt] ?? mt;
}

/** Docker schema 2's media type for a layer type, or undefined when it has none (zstd, plain nondistributable). */
export function dockerLayerMediaType(mt: string): string | undefined {
  return mt in DOCKER_TO_OCI_LAYER ? mt : OCI_TO_DOCKER_LAYER[mt];
}
