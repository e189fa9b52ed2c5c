/**
 * A filesystem mount to perform, in mount(2) terms: `mount -t <type> <source> <target> -o <options>`.
 *
 * - overlay: `{ type: 'overlay', source: 'overlay', options: ['index=off', 'metacopy=off',
 *   'redirect_dir=off', 'lowerdir=<nearest parent first>:…', 'upperdir=…', 'workdir=…'] }`
 * - bind: `{ type: 'bind', source: dir, options: ['rbind', 'rw' | 'ro'] }` (a read-only bind
 *   needs a second, remounting mount(2) call with MS_RDONLY).
 */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  kind: SnapshotKind;
  /** The key of an active snapshot or view, or the name of a committed one. */
  name: string;
  /** Name of the committed snapshot this one is based on. */
  parent?: string;
  labels: Record<string, string>;
  /** ISO 8601 times. */
  created: string;
  updated: string;
}

/**
 * Snapshots of filesystem trees, after containerd's snapshotter model.
 *
 * Two kinds of identifier, never mixed up:
 * - a **key** names an *active* snapshot (writable, from `prepare`) or a *view* (read-only,
 *   from `view`); it is chosen by the caller and only lives until `commit` or `remove`;
 * - a **name** names a *committed* snapshot: immutable, and the only kind that can be a
 *   **parent**. Committing turns an active snapshot (key) into a committed one (name).
 *
 * Lifecycle:
 * ```
 *   prepare(key, parent?) ──► active ──commit(name, key)──► committed ──► parent of new prepares/views
 *   view(key, parent?)    ──► view (read-only; cannot be committed)
 *   remove(keyOrName)     ──► gone (refused while committed children exist)
 * ```
 * `prepare`/`view` return the mounts that assemble the tree; `mounts(key)` returns them again.
 * The snapshotter never mounts anything itself: the caller mounts them where it needs
 * (tsbuild does it inside a helper's private mount namespace).
 *
 * Example, importing a layer (what `unpack` does):
 * 1. `prepare('extract-<random>', parentChainID)` → an empty writable snapshot over the parent;
 * 2. `apply(layerTar, fsDir(key))` writes the layer's files, whiteouts and opaque markers
 *    straight into the snapshot's change directory (no mount needed);
 * 3. `commit(chainID, key)`: the layer is now a committed snapshot others can build on.
 *
 * Example, running a container (a RUN step):
 * 1. `prepare('run-<id>', imageTopChainID)` → overlay mounts; mount them and run the process;
 * 2. `diff(snapshotter, key)` streams the changes as a layer tar (whiteouts included);
 * 3. `commit(newChainID, key)` keeps the result as the parent of the next step, or
 *    `remove(key)` throws it away.
 */
export interface Snapshotter {
  /** Info of a snapshot; NotFoundError if there is none by that key or name. */
  stat(keyOrName: string): Promise<SnapshotInfo>;
  /** Creates an active (writable) snapshot over committed `parent`. AlreadyExistsError if `key` is taken. */
  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** Creates a read-only view of committed `parent`. */
  view(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** The mounts of an active snapshot or view. */
  mounts(key: string): Promise<Mount[]>;
  /** Turns active snapshot `key` into committed snapshot `name`; AlreadyExistsError if `name` exists. */
  commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void>;
  /** Removes a snapshot and its data; FailedPreconditionError while it has children. */
  remove(keyOrName: string): Promise<void>;
  /** Calls fn for every snapshot, ordered by key/name. */
  walk(fn: (info: SnapshotInfo) => Promise<void> | void): Promise<void>;
  /** Disk usage of the snapshot's own data (not its parents'): bytes allocated and inodes. */
  usage(keyOrName: string): Promise<{ size: number; inodes: number }>;
}
