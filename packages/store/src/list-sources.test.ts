import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MediaType, type Descriptor } from '@tsbuild/oci';
import { Store } from './store.js';
import { emptyManifestList, readManifestList, withEntry, writeManifestList } from './manifest-list.js';

const absent = (n: string): Descriptor => ({ mediaType: MediaType.OciManifest, digest: `sha256:${n.repeat(64)}`, size: 100, platform: { os: 'linux', architecture: 'arm64' } });

describe('list entries added from a registry', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-list-'));
    store = await Store.open(dir);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('fsck accepts a missing entry manifest recorded as remote, and reports one that is not', async () => {
    const list = withEntry(withEntry(emptyManifestList(), absent('a')), absent('b'));
    await writeManifestList(store, 'l', list, { remote: new Map([[absent('a').digest, 'docker://r.example/a:1']]) });
    const { remote } = await readManifestList(store, 'l');
    expect([...remote]).toEqual([[absent('a').digest, 'docker://r.example/a:1']]);
    const report = await store.fsck();
    expect(report.problems.map((p) => [p.kind, p.digest])).toEqual([['missing-blob', absent('b').digest]]);
  });

  it('records only entries still in the list; gc removes the records of lists no name keeps', async () => {
    const one = withEntry(emptyManifestList(), absent('a'));
    const remote = new Map([[absent('a').digest, 'docker://r.example/a:1'], [absent('c').digest, 'docker://r.example/c:1']]);
    const d1 = await writeManifestList(store, 'l', one, { remote });
    expect([...(await readManifestList(store, 'l')).remote.keys()]).toEqual([absent('a').digest]);
    // the list changed: its old version (and record) is garbage, the new one has none
    await writeManifestList(store, 'l', emptyManifestList(), { remote });
    expect(await readdir(join(dir, 'manifest-lists'))).toEqual([`${d1.digest.slice(7)}.json`]);
    expect((await store.listImages()).map((r) => r.name ?? '<none>')).toEqual(['docker.io/library/l:latest']);
    await store.gc();
    expect(await readdir(join(dir, 'manifest-lists'))).toEqual([]);
  });
});
