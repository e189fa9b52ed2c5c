import { describe, expect, it } from 'vitest';
import { MediaType, type Descriptor } from '@tsbuild/oci';
import { emptyManifestList, withEntry } from './manifest-list.js';

const d = (n: string, arch?: string): Descriptor => ({
  mediaType: MediaType.OciManifest,
  digest: `sha256:${n.repeat(64)}`,
  size: 1,
  ...(arch ? { platform: { os: 'linux', architecture: arch } } : {}),
});

describe('manifest lists', () => {
  it('appends new entries, replaces one of the same digest in place', () => {
    let l = emptyManifestList('docker');
    expect(l.mediaType).toBe(MediaType.DockerManifestList);
    l = withEntry(withEntry(l, d('a', 'amd64')), d('b', 'arm64'));
    expect(l.manifests.map((m) => m.digest[7])).toEqual(['a', 'b']);
    const annotated = { ...d('a', 'amd64'), annotations: { x: 'y' } };
    expect(withEntry(l, annotated).manifests[0]).toEqual(annotated);
    expect(withEntry(l, d('c', 'amd64')).manifests.map((m) => m.digest[7])).toEqual(['a', 'b', 'c']);
  });

  it('with replacePlatform, a new image for a platform takes the old one\'s place', () => {
    const l = withEntry(withEntry(emptyManifestList(), d('a', 'amd64')), d('b', 'arm64'));
    expect(withEntry(l, d('c', 'amd64'), { replacePlatform: true }).manifests.map((m) => m.digest[7])).toEqual(['c', 'b']);
  });
});
