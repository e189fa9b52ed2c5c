import { describe, expect, it } from 'vitest';
import { digestHex, isDigest, parseDigest, shortId } from './digest.js';
import { dockerLayerMediaType, layerCompression, layerMediaType, MediaType, ociLayerMediaType } from './media-types.js';
import { parsePlatform, formatPlatform } from './platform.js';

describe('digests', () => {
  it('accepts sha256 and sha512 and rejects others', () => {
    expect(isDigest(`sha256:${'0'.repeat(64)}`)).toBe(true);
    expect(isDigest(`sha512:${'0'.repeat(128)}`)).toBe(true);
    expect(isDigest(`sha256:${'0'.repeat(63)}`)).toBe(false);
    expect(isDigest(`md5:${'0'.repeat(32)}`)).toBe(false);
    expect(() => parseDigest('sha256:XYZ')).toThrow('invalid digest "sha256:XYZ"');
  });
  it('gives hex and the 12-character short ID', () => {
    const d = parseDigest(`sha256:${'ab'.repeat(32)}`);
    expect(digestHex(d)).toBe('ab'.repeat(32));
    expect(shortId(d)).toBe('abababababab');
  });
});

describe('media types and platforms', () => {
  it('knows how layers are compressed', () => {
    expect(layerCompression(MediaType.OciLayerGzip)).toBe('gzip');
    expect(layerCompression(MediaType.DockerLayerGzip)).toBe('gzip');
    expect(layerCompression(MediaType.OciLayer)).toBe('none');
    expect(layerCompression(MediaType.OciLayerZstd)).toBe('zstd');
    expect(layerCompression(MediaType.DockerLayer)).toBe('none');
    expect(layerCompression(MediaType.OciConfig)).toBeUndefined();
  });
  it('names the layer type of each manifest format and compression; Docker schema 2 has no zstd', () => {
    expect(layerMediaType('oci', 'none')).toBe('application/vnd.oci.image.layer.v1.tar');
    expect(layerMediaType('docker', 'none')).toBe('application/vnd.docker.image.rootfs.diff.tar');
    expect(layerMediaType('docker', 'gzip')).toBe(MediaType.DockerLayerGzip);
    expect(() => layerMediaType('docker', 'zstd')).toThrow(/zstd needs an OCI manifest/);
  });
  it('renames layer types between Docker schema 2 and the image spec', () => {
    expect(ociLayerMediaType(MediaType.DockerLayerGzip)).toBe(MediaType.OciLayerGzip);
    expect(ociLayerMediaType(MediaType.DockerLayer)).toBe(MediaType.OciLayer);
    expect(ociLayerMediaType(MediaType.DockerForeignLayerGzip)).toBe(MediaType.OciNondistributableLayerGzip);
    expect(ociLayerMediaType(MediaType.OciLayerZstd)).toBe(MediaType.OciLayerZstd);
    expect(dockerLayerMediaType(MediaType.OciLayerGzip)).toBe(MediaType.DockerLayerGzip);
    expect(dockerLayerMediaType(MediaType.OciLayer)).toBe(MediaType.DockerLayer);
    expect(dockerLayerMediaType(MediaType.OciNondistributableLayerGzip)).toBe(MediaType.DockerForeignLayerGzip);
    expect(dockerLayerMediaType(MediaType.DockerLayerGzip)).toBe(MediaType.DockerLayerGzip);
    expect(dockerLayerMediaType(MediaType.OciLayerZstd)).toBeUndefined();
    expect(dockerLayerMediaType(MediaType.OciNondistributableLayer)).toBeUndefined();
  });
  it('parses os/arch[/variant]', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(formatPlatform(parsePlatform('linux/amd64'))).toBe('linux/amd64');
    expect(() => parsePlatform('linux')).toThrow(/invalid platform/);
  });
});
