import type { Readable } from 'node:stream';
import { chainIds, DataLossError, isTsbuildError, type Digest } from '@tsbuild/oci';
import { randomHex } from '@tsbuild/linux';
import { apply, type ApplyOptions } from './apply.js';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';

/**
 * Unpacks an image's layers into committed snapshots named by chainID (image-spec config.md),
 * skipping those that exist, so images sharing base layers share their snapshots. Returns the
 * top chainID, or undefined for no layers.
 *
 * Each layer goes into a fresh active snapshot under a unique key and is committed only after
 * its diffID checked out; when another process committed the same chainID meanwhile, ours is
 * dropped and theirs used: both hold the same bytes by construction. Whatever makes a layer
 * fail (it cannot be opened or read, an entry is hostile, the diffID does not match), its active
 * snapshot is removed before the error is rethrown, so a failed unpack leaves only the committed
 * layers below the failing one. `opts` go to `apply` for every layer.
 */
export async function unpack(
  s: OverlaySnapshotter,
  layers: { diffID: Digest; open: () => Promise<Readable> }[],
  opts: ApplyOptions = {},
): Promise<string | undefined> {
  const chain = chainIds(layers.map((l) => l.diffID));
  let parent: string | undefined;
  for (const [i, layer] of layers.entries()) {
    const name = chain[i]!;
    if (await isCommitted(s, name)) {
      parent = name;
      continue;
    }
    const key = `unpack-${name}-${randomHex(6)}`;
    await s.prepare(key, parent, { labels: { 'tsbuild.unpack.diffID': layer.diffID } });
    try {
      const { diffID } = await apply(await layer.open(), await s.fsDir(key), opts);
      if (diffID !== layer.diffID) {
        throw new DataLossError(`layer ${i} of the image has diffID ${diffID}, expected ${layer.diffID}`);
      }
      await s.commit(name, key);
    } catch (e) {
      await s.remove(key).catch(() => undefined);
      const lostRace = isTsbuildError(e) && e.code === 'ALREADY_EXISTS' && (await isCommitted(s, name));
      if (!lostRace) throw e;
    }
    parent = name;
  }
  return parent;
}

async function isCommitted(s: OverlaySnapshotter, name: string): Promise<boolean> {
  if (!(await s.exists(name))) return false;
  return (await s.stat(name)).kind === 'committed';
}
