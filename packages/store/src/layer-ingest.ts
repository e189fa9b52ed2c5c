import { Transform, type Duplex, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DataLossError, InvalidArgumentError, MediaType, type Digest, crypto } from '@tsbuild/oci';
import type { ContentStore } from './content-store.js';
import { DEFAULT_GZIP_LEVEL, createParallelGzip } from './parallel-gzip.js';
import { createZstdCompress } from './zstd-stream.js';

export { DEFAULT_GZIP_LEVEL } from './parallel-gzip.js';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface IngestLayerOptions {
  /** Default 'gzip'. */
  compression?: LayerCompression;
  /** gzip: 1–9, default DEFAULT_GZIP_LEVEL. zstd: 1–22, default DEFAULT_ZSTD_LEVEL. */
  level?: number;
  /**
   * The diffID the tar must have (when compressing a layer the store already holds): checked
   * before the blob is committed, so a tar that does not match never becomes a visible blob.
   */
  expectedDiffID?: Digest;
}

export interface IngestedLayer {
  /** The stored blob (compressed as asked; with 'none' the tar itself, so digest = diffID). */
  digest: Digest;
  size: number;
  /** sha256 of the uncompressed tar: what the config's rootfs.diff_ids lists. */
  diffID: Digest;
  /**
   * The OCI media type of the blob. A Docker schema 2 manifest takes gzip or plain tar layers
   * only, under its own media types (layerMediaType('docker', …) in @tsbuild/oci).
   */
  mediaType: string;
}

/**
 * One streaming pass over a layer tar: diffID = sha256 of the tar bytes as they flow into the
 * compressor; digest/size of the compressed blob, hashed by the blob writer as it writes (for
 * 'none' the blob is the tar, and its digest the diffID). Nothing
 * is held beyond the compressor's bounded chunks in flight, and no temporary copy of the layer is
 * made: the blob file being written is the only one.
 */
export async function ingestLayer(
  content: ContentStore,
  tar: Readable,
  opts: IngestLayerOptions = {},
): Promise<IngestedLayer> {
  const compression = opts.compression ?? 'gzip';
  // Build the compressor first: a bad level is an InvalidArgumentError before any blob is opened.
  let compressor: Duplex | undefined;
  let mediaType: string;
  switch (compression) {
    case 'gzip':
      compressor = createParallelGzip({ level: opts.level ?? DEFAULT_GZIP_LEVEL });
      mediaType = MediaType.OciLayerGzip;
      break;
    case 'zstd':
      compressor = createZstdCompress(opts.level !== undefined ? { level: opts.level } : {});
      mediaType = MediaType.OciLayerZstd;
      break;
    case 'none':
      if (opts.level !== undefined) throw new InvalidArgumentError(`a compression level (${opts.level}) needs gzip or zstd, not none`);
      mediaType = MediaType.OciLayer;
      break;
    default:
      throw new InvalidArgumentError(`unknown layer compression "${String(compression)}": want gzip, zstd or none`);
  }
  if (compressor === undefined) {
    // A plain tar is its own blob: the writer's digest is the diffID, so the bytes are hashed
    // once (a second sha256 pass costs ~0.13 s on a 200 MB layer), and it checks expectedDiffID
    // before the rename.
    const writer = await content.write(opts.expectedDiffID !== undefined ? { expected: opts.expectedDiffID } : {});
    try {
      await pipeline(tar, writer);
    } catch (e) {
      await writer.abort();
      throw e;
    }
    const { digest, size } = await writer.commit();
    return { digest, size, diffID: digest, mediaType };
  }
  const hash = crypto().createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const writer = await content.write();
  try {
    await pipeline(tar, hasher, compressor, writer);
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const diffID: Digest = `sha256:${hash.digest('hex')}`;
  if (opts.expectedDiffID !== undefined && diffID !== opts.expectedDiffID) {
    await writer.abort();
    throw new DataLossError(`layer tar hashes to ${diffID}, expected diffID ${opts.expectedDiffID}`);
  }
  const { digest, size } = await writer.commit();
  return { digest, size, diffID, mediaType };
}
