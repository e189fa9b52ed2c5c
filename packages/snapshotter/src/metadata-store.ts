import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { flock, LOCK_EX, LOCK_UN, randomHex } from '@tsbuild/linux';
import { DataLossError } from '@tsbuild/oci';
import type { SnapshotKind } from './snapshotter.js';

export interface SnapshotRecord {
  /** Small integer: the data lives in <root>/<id>/fs and <root>/<id>/work. */
  id: number;
  kind: SnapshotKind;
  parent?: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
}

export interface Metadata {
  version: 1;
  /** Ids are never reused, so a directory being deleted can never be mistaken for a new one. */
  nextId: number;
  snapshots: Record<string, SnapshotRecord>;
}

/**
 * All snapshot records in one JSON file. Every change happens under flock(2) on <root>/lock and
 * replaces the file atomically (temp + fsync + rename + fsync of the directory), so processes
 * sharing a root see either the old or the new state, never a torn one, and a crash loses at
 * most the change in flight.
 */
export class MetadataStore {
  private readonly file: string;
  private readonly lockFile: string;

  constructor(private readonly root: string) {
    this.file = join(root, 'metadata.json');
    this.lockFile = join(root, 'lock');
  }

  /** The current state; readers need no lock because the file is only ever replaced whole. */
  async read(): Promise<Metadata> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, nextId: 1, snapshots: {} };
      throw e;
    }
    try {
      const m = JSON.parse(text) as Metadata;
      if (typeof m !== 'object' || m === null || m.version !== 1 || typeof m.nextId !== 'number' || typeof m.snapshots !== 'object' || m.snapshots === null || Array.isArray(m.snapshots)) {
        throw new Error('want {"version":1,"nextId":N,"snapshots":{…}}');
      }
      return m;
    } catch (e) {
      throw new DataLossError(`snapshot metadata ${this.file} is corrupt: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Runs fn with the exclusive lock held and the current state; if fn returns true the
   * (mutated) state is written back before the lock is released.
   */
  async update<T>(fn: (m: Metadata) => Promise<{ write: boolean; result: T }>): Promise<T> {
    const lock = await open(this.lockFile, 'a');
    try {
      await flock(lock.fd, LOCK_EX);
      const m = await this.read();
      const { write, result } = await fn(m);
      if (write) await this.write(m);
      return result;
    } finally {
      await flock(lock.fd, LOCK_UN).catch(() => undefined);
      await lock.close();
    }
  }

  private async write(m: Metadata): Promise<void> {
    const tmp = `${this.file}.tmp-${process.pid}-${randomHex(4)}`;
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(m, null, 1));
      await fh.sync();
    } catch (e) {
      await fh.close();
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fh.close();
    await rename(tmp, this.file);
    const dir = await open(this.root, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
