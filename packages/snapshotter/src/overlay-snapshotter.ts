import { chmod, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AlreadyExistsError, DataLossError, FailedPreconditionError, InvalidArgumentError, NotFoundError, isoTime } from '@tsbuild/oci';
import { MetadataStore, type Metadata, type SnapshotRecord } from './metadata-store.js';
import type { Mount, SnapshotInfo, SnapshotKind, Snapshotter } from './snapshotter.js';
import { overlayMountOptions } from './whiteout.js';

/**
 * overlayfs options for every mount: with index, metacopy and redirect_dir off, each change in
 * the merged tree is a full copy-up or a plain whiteout in the upperdir, so `diff` can read the
 * layer from the upperdir alone (a metacopy-only inode or a redirected directory would need
 * the lower layers to interpret). This kernel has all three parameters
 * (/sys/module/overlay/parameters).
 */

/**
 * The `Snapshotter` over overlayfs. Layout under root (<store>/snapshots):
 * ```
 * metadata.json   every snapshot record (see MetadataStore)
 * lock            flock(2) taken while metadata changes
 * <id>/fs         a snapshot's own files: the upperdir of an active one, a lowerdir once committed
 * <id>/work       overlayfs workdir of an active snapshot (same filesystem as fs, as overlay requires)
 * ```
 * Ids are small integers to keep paths short: a 200-layer lowerdir list must fit in the one
 * page of data mount(2) accepts.
 */
export class OverlaySnapshotter implements Snapshotter {
  private readonly meta: MetadataStore;

  private constructor(private readonly root: string) {
    this.meta = new MetadataStore(root);
  }

  static async open(root: string): Promise<OverlaySnapshotter> {
    const abs = resolve(root);
    // 0711: others may pass through but not list. A container in a user namespace (root inside
    // is an unprivileged uid outside) must reach its lower and upper directories to mount them.
    await mkdir(abs, { recursive: true, mode: 0o711 });
    await chmod(abs, 0o711);
    const s = new OverlaySnapshotter(abs);
    await s.meta.read(); // fail early on corrupt metadata
    return s;
  }

  async stat(keyOrName: string): Promise<SnapshotInfo> {
    const m = await this.meta.read();
    return toInfo(keyOrName, this.record(m, keyOrName));
  }

  async exists(keyOrName: string): Promise<boolean> {
    const m = await this.meta.read();
    return Object.hasOwn(m.snapshots, keyOrName);
  }

  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]> {
    return this.create('active', key, parent, opts?.labels);
  }

  view(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]> {
    return this.create('view', key, parent, opts?.labels);
  }

  async mounts(key: string): Promise<Mount[]> {
    const m = await this.meta.read();
    const rec = this.record(m, key);
    if (rec.kind === 'committed') {
      throw new FailedPreconditionError(`snapshot "${key}" is committed: only active snapshots and views have mounts`);
    }
    return this.mountsOf(m, rec);
  }

  async commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void> {
    checkKey(name);
    const id = await this.meta.update(async (m) => {
      const rec = this.record(m, key);
      if (rec.kind !== 'active') {
        throw new FailedPreconditionError(`cannot commit snapshot "${key}": it is ${rec.kind === 'view' ? 'a view' : 'already committed'}`);
      }
      if (Object.hasOwn(m.snapshots, name)) throw new AlreadyExistsError(`snapshot "${name}" already exists (committing "${key}")`);
      const now = isoTime();
      delete m.snapshots[key];
      m.snapshots[name] = { ...rec, kind: 'committed', labels: { ...rec.labels, ...opts?.labels }, updated: now };
      return { write: true, result: rec.id };
    });
    // A committed snapshot is only ever a lowerdir: its workdir is no longer needed.
    await rm(join(this.root, String(id), 'work'), { recursive: true, force: true });
  }

  async remove(keyOrName: string): Promise<void> {
    const id = await this.meta.update(async (m) => {
      const rec = this.record(m, keyOrName);
      const children = Object.entries(m.snapshots).filter(([, r]) => r.parent === keyOrName).map(([k]) => k);
      if (children.length > 0) {
        throw new FailedPreconditionError(`cannot remove snapshot "${keyOrName}": it is the parent of ${children.map((c) => `"${c}"`).join(', ')}`);
      }
      delete m.snapshots[keyOrName];
      // Moved aside while the lock is held, deleted after: a crash in between leaves a
      // directory no record names, which cleanup() removes.
      await rename(join(this.root, String(rec.id)), join(this.root, `${rec.id}.removing`)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      return { write: true, result: rec.id };
    });
    await rm(join(this.root, `${id}.removing`), { recursive: true, force: true });
  }

  async walk(fn: (info: SnapshotInfo) => Promise<void> | void): Promise<void> {
    const m = await this.meta.read();
    for (const name of Object.keys(m.snapshots).sort()) await fn(toInfo(name, m.snapshots[name]!));
  }

  async usage(keyOrName: string): Promise<{ size: number; inodes: number }> {
    const dir = await this.fsDir(keyOrName);
    const seen = new Set<string>();
    let size = 0;
    let inodes = 0;
    const visit = async (p: string): Promise<void> => {
      const st = await lstat(p, { bigint: true });
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) return; // a hardlinked inode is counted once, like du
      seen.add(id);
      inodes++;
      size += Number(st.blocks) * 512;
      if (st.isDirectory()) for (const e of await readdir(p)) await visit(join(p, e));
    };
    await visit(dir);
    return { size, inodes };
  }

  /** Directory holding an active snapshot's changes (its upperdir), or a committed snapshot's own files. */
  async fsDir(keyOrName: string): Promise<string> {
    const m = await this.meta.read();
    return join(this.root, String(this.record(m, keyOrName).id), 'fs');
  }

  /** Removes leftovers of crashed operations (data dirs with no metadata). */
  async cleanup(): Promise<void> {
    await this.meta.update(async (m) => {
      const live = new Set(Object.values(m.snapshots).map((r) => String(r.id)));
      for (const e of await readdir(this.root)) {
        if (e === 'metadata.json' || e === 'lock' || live.has(e)) continue;
        // Anything else is a removed snapshot's data, a prepare that crashed before its record
        // was written, or a temp metadata file; the lock keeps live operations out meanwhile.
        await rm(join(this.root, e), { recursive: true, force: true });
      }
      return { write: false, result: undefined };
    });
  }

  /**
   * For `tsbuild fsck`: what is wrong between metadata.json and the snapshot directories, one
   * message per problem (none for a healthy root). metadata.json must parse; every record must
   * be well-formed, its parent a committed snapshot that exists, and its `<id>/fs` (and for an
   * active snapshot `<id>/work`) a directory. A directory no record names is not a problem: it is
   * what a crash leaves, and cleanup() removes it. Read under the metadata lock, so a snapshot
   * being created or removed is never seen half done. Needs no open(): a corrupt metadata.json is
   * a finding here, not an error.
   */
  static async check(root: string): Promise<string[]> {
    const abs = resolve(root);
    if ((await lstat(abs).catch(() => undefined)) === undefined) return [];
    const s = new OverlaySnapshotter(abs);
    try {
      return await s.meta.update(async (m) => ({ write: false, result: await s.problems(m) }));
    } catch (e) {
      if (e instanceof DataLossError) return [e.message];
      throw e;
    }
  }

  private async problems(m: Metadata): Promise<string[]> {
    const out: string[] = [];
    const ids = new Map<number, string>();
    const kinds = new Set<string>(['active', 'view', 'committed']);
    for (const [key, rec] of Object.entries(m.snapshots) as [string, unknown][]) {
      const at = `snapshot "${key}" (${join(this.root, 'metadata.json')})`;
      if (typeof rec !== 'object' || rec === null) {
        out.push(`${at}: its record is not an object`);
        continue;
      }
      const r = rec as Partial<SnapshotRecord>;
      if (!Number.isSafeInteger(r.id) || (r.id as number) < 1) {
        out.push(`${at}: invalid id ${JSON.stringify(r.id)}`);
        continue;
      }
      const id = r.id as number;
      if (ids.has(id)) out.push(`${at}: id ${id} is also the id of snapshot "${ids.get(id)}"`);
      ids.set(id, key);
      if (id >= m.nextId) out.push(`${at}: id ${id} is not below nextId ${m.nextId}`);
      if (typeof r.kind !== 'string' || !kinds.has(r.kind)) out.push(`${at}: invalid kind ${JSON.stringify(r.kind)}`);
      if (r.parent !== undefined) {
        const p = typeof r.parent === 'string' && Object.hasOwn(m.snapshots, r.parent) ? m.snapshots[r.parent] : undefined;
        if (p === undefined) out.push(`${at}: parent ${JSON.stringify(r.parent)} does not exist`);
        else if (p.kind !== 'committed') out.push(`${at}: parent "${r.parent}" is not committed (it is ${String(p.kind)})`);
        else if (this.inCycle(m, key)) out.push(`${at}: its parents form a cycle`);
      }
      const dirs = r.kind === 'active' ? ['fs', 'work'] : ['fs'];
      for (const d of dirs) {
        const path = join(this.root, String(id), d);
        const st = await lstat(path).catch(() => undefined);
        if (st === undefined) out.push(`snapshot "${key}": its directory ${path} is missing`);
        else if (!st.isDirectory()) out.push(`snapshot "${key}": ${path} is not a directory`);
      }
    }
    return out;
  }

  private inCycle(m: Metadata, key: string): boolean {
    const seen = new Set<string>([key]);
    for (let p = m.snapshots[key]?.parent; p !== undefined; p = m.snapshots[p]?.parent) {
      if (seen.has(p)) return true;
      seen.add(p);
    }
    return false;
  }

  private async create(kind: SnapshotKind, key: string, parent: string | undefined, labels: Record<string, string> | undefined): Promise<Mount[]> {
    checkKey(key);
    return this.meta.update(async (m) => {
      if (Object.hasOwn(m.snapshots, key)) throw new AlreadyExistsError(`snapshot "${key}" already exists`);
      if (parent !== undefined) {
        const p = m.snapshots[parent];
        if (p === undefined || !Object.hasOwn(m.snapshots, parent)) throw new NotFoundError(`parent snapshot "${parent}" not found (preparing "${key}")`);
        if (p.kind !== 'committed') throw new FailedPreconditionError(`parent "${parent}" of "${key}" is not committed (it is ${p.kind})`);
      }
      const id = m.nextId++;
      const dir = join(this.root, String(id));
      await mkdir(join(dir, 'fs'), { recursive: true, mode: 0o755 });
      if (kind === 'active') await mkdir(join(dir, 'work'), { mode: 0o700 });
      const now = isoTime();
      const rec: SnapshotRecord = { id, kind, labels: { ...labels }, created: now, updated: now };
      if (parent !== undefined) rec.parent = parent;
      m.snapshots[key] = rec;
      return { write: true, result: this.mountsOf(m, rec) };
    });
  }

  private record(m: Metadata, keyOrName: string): SnapshotRecord {
    const rec = Object.hasOwn(m.snapshots, keyOrName) ? m.snapshots[keyOrName] : undefined;
    if (rec === undefined) throw new NotFoundError(`snapshot "${keyOrName}" not found in ${this.root}`);
    return rec;
  }

  private mountsOf(m: Metadata, rec: SnapshotRecord): Mount[] {
    const fs = (r: SnapshotRecord): string => join(this.root, String(r.id), 'fs');
    const lowers: string[] = [];
    for (let p = rec.parent; p !== undefined; p = m.snapshots[p]?.parent) {
      const pr = m.snapshots[p];
      if (pr === undefined) throw new NotFoundError(`parent snapshot "${p}" not found in ${this.root}`);
      lowers.push(fs(pr));
    }
    if (rec.kind === 'active') {
      if (lowers.length === 0) return [{ type: 'bind', source: fs(rec), options: ['rbind', 'rw'] }];
      return [{
        type: 'overlay',
        source: 'overlay',
        options: [...overlayMountOptions(), `lowerdir=${lowers.join(':')}`, `upperdir=${fs(rec)}`, `workdir=${join(this.root, String(rec.id), 'work')}`],
      }];
    }
    // A view: an empty read-only tree, one read-only layer, or overlay of lowerdirs only.
    if (lowers.length === 0) return [{ type: 'bind', source: fs(rec), options: ['rbind', 'ro'] }];
    if (lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['rbind', 'ro'] }];
    return [{ type: 'overlay', source: 'overlay', options: [...overlayMountOptions(), `lowerdir=${lowers.join(':')}`] }];
  }
}

function toInfo(name: string, r: SnapshotRecord): SnapshotInfo {
  const info: SnapshotInfo = { kind: r.kind, name, labels: { ...r.labels }, created: r.created, updated: r.updated };
  if (r.parent !== undefined) info.parent = r.parent;
  return info;
}

function checkKey(key: string): void {
  if (key.length === 0) throw new InvalidArgumentError('snapshot key or name must not be empty');
}
