import { promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  AlreadyExistsError,
  type Descriptor,
  type Digest,
  type HistoryEntry,
  type ImageConfig,
  InvalidArgumentError,
  NotFoundError,
  parseReference,
  isoTime,
} from '@tsbuild/oci';
import { FileLock, type Store } from '@tsbuild/store';
import { randomHex } from '@tsbuild/linux';
import type { RunDefaults } from './defaults.js';

/** The label on a working container's active snapshot: its container ID. prune keeps such snapshots. */
export const CONTAINER_LABEL = 'tsbuild.container';

/**
 * A working container as the store keeps it (`<store>/containers/<id>/state.json`): what `from`
 * started from, the config being edited, and the active snapshot that holds every change since.
 * Written whole to a temporary file and renamed over the old one, so a kill at any moment leaves
 * the previous state or the new one.
 */
export interface ContainerRecord {
  version: 1;
  /** 64 hex digits, as buildah's IDs. */
  id: string;
  name: string;
  created: string;
  /** The image `from` named (as given) and what it was; absent for scratch. */
  image?: { name: string; id: Digest; manifest: Descriptor };
  /** The config being edited; its history and diff_ids are the base image's. */
  config: ImageConfig;
  /** The base image's layers: a commit writes these plus one layer of the snapshot's changes. */
  layers: Descriptor[];
  /** Manifest annotations (`config --annotation`). */
  annotations: Record<string, string>;
  /** For the next commit's history entry: `config --created-by` and `--history-comment`. */
  createdBy?: string;
  historyComment?: string;
  /** Entries `run`/`copy`/`add --add-history` recorded, written before the layer's own at commit. */
  pendingHistory: HistoryEntry[];
  /** The active snapshot with the container's filesystem changes. */
  snapshot: string;
  /** Runtime settings given to `from` (limits, network, capabilities …) that every `run` starts from. */
  runtime?: RunDefaults;
}

/**
 * The containers of one store: a directory each, a lock each (two processes on one container
 * take turns; on different containers they run side by side), and one lock over the set for
 * naming (create, rename, remove).
 */
export class ContainerRecords {
  readonly dir: string;
  private readonly setLock: FileLock;

  constructor(readonly store: Store) {
    this.dir = path.join(store.root, 'containers');
    this.setLock = new FileLock(path.join(this.dir, '.lock'));
  }

  private async ensureDir(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Every container, by creation time. A record that cannot be read is skipped (fsck names it). */
  async list(): Promise<ContainerRecord[]> {
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    const out: ContainerRecord[] = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      const r = await this.read(n).catch(() => undefined);
      if (r) out.push(r);
    }
    // Code-unit order: created is an ISO 8601 time, and localeCompare would load ICU's collator (~7 ms).
    return out.sort((a, b) => compare(a.created, b.created) || compare(a.name, b.name));
  }

  private async read(id: string): Promise<ContainerRecord> {
    return JSON.parse(await fsp.readFile(path.join(this.dir, id, 'state.json'), 'utf8')) as ContainerRecord;
  }

  /** The container named `nameOrId` (its name, full ID or an unambiguous ID prefix of 3+ digits), or undefined. */
  async find(nameOrId: string): Promise<ContainerRecord | undefined> {
    // A full ID is read directly: every locked operation looks its own record up again by ID.
    if (/^[0-9a-f]{64}$/.test(nameOrId)) {
      const r = await this.read(nameOrId).catch(() => undefined);
      if (r) return r;
    }
    const all = await this.list();
    const byName = all.find((r) => r.name === nameOrId);
    if (byName) return byName;
    if (!/^[0-9a-f]{3,64}$/.test(nameOrId)) return undefined;
    const byId = all.filter((r) => r.id.startsWith(nameOrId));
    if (byId.length > 1) throw new InvalidArgumentError(`container ID prefix ${nameOrId} is ambiguous (${byId.length} containers)`);
    return byId[0];
  }

  async get(nameOrId: string): Promise<ContainerRecord> {
    const r = await this.find(nameOrId);
    if (!r) throw new NotFoundError(`container ${nameOrId}: no such working container (see: tsbuild containers)`);
    return r;
  }

  /** Runs `fn` holding the container's lock: one process at a time acts on one container. */
  async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return new FileLock(path.join(this.dir, id, 'lock')).with('exclusive', fn);
  }

  /** Writes a record: the whole file to a temporary name, fsync'd, then renamed over the old one. */
  async save(r: ContainerRecord): Promise<void> {
    const dir = path.join(this.dir, r.id);
    const tmp = path.join(dir, `state.json.${randomHex(4)}`);
    const fh = await fsp.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(r)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path.join(dir, 'state.json'));
  }

  /**
   * Creates a container's directory and first record under a free name: `name` when given (taken:
   * an error), else buildah's `<image>-working-container`, then `-1`, `-2` …. `make` completes
   * the record (its snapshot is prepared there) once the name is reserved.
   */
  async create(image: string, name: string | undefined, make: (id: string, name: string) => Promise<ContainerRecord>): Promise<ContainerRecord> {
    await this.ensureDir();
    const id = randomHex(32);
    const reserved = await this.setLock.with('exclusive', async () => {
      const taken = new Set((await this.list()).map((r) => r.name));
      let chosen = name;
      if (chosen !== undefined) {
        checkName(chosen);
        if (taken.has(chosen)) throw new AlreadyExistsError(`the container name "${chosen}" is already in use`);
      } else {
        const base = `${baseName(image)}working-container`;
        chosen = base;
        for (let i = 1; taken.has(chosen); i++) chosen = `${base}-${i}`;
      }
      await fsp.mkdir(path.join(this.dir, id), { mode: 0o700 });
      // A placeholder holds the name until the record is complete; a crash leaves a record with no snapshot, which rm clears.
      await this.save(placeholder(id, chosen));
      return chosen;
    });
    try {
      const r = await make(id, reserved);
      await this.save(r);
      return r;
    } catch (e) {
      await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
      throw e;
    }
  }

  async rename(id: string, name: string): Promise<void> {
    checkName(name);
    await this.setLock.with('exclusive', async () => {
      const all = await this.list();
      const other = all.find((r) => r.name === name);
      if (other && other.id !== id) throw new AlreadyExistsError(`the container name "${name}" is already in use`);
      const r = all.find((x) => x.id === id);
      if (!r) throw new NotFoundError(`container ${id}: no such working container`);
      await this.save({ ...r, name });
    });
  }

  /** Removes a container's record and directory (its snapshot must be gone already). */
  async remove(id: string): Promise<void> {
    await this.setLock.with('exclusive', async () => {
      // The state file first: from then on the container is gone, even if the rest of the directory stays.
      await fsp.rm(path.join(this.dir, id, 'state.json'), { force: true });
      await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
    });
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function placeholder(id: string, name: string): ContainerRecord {
  return {
    version: 1,
    id,
    name,
    created: isoTime(),
    config: { architecture: '', os: '', rootfs: { type: 'layers', diff_ids: [] } },
    layers: [],
    annotations: {},
    pendingHistory: [],
    snapshot: '',
  };
}

/** Container names as podman and buildah accept them. */
function checkName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw new InvalidArgumentError(`invalid container name "${name}": want letters, digits, _ . - (not first)`);
}

/** buildah's prefix of a container's default name: the image's last path component without tag or digest, and a `-`; none for scratch. */
function baseName(image: string): string {
  if (image === 'scratch') return '';
  let name = image;
  try {
    name = parseReference(image).path;
  } catch {
    // an ID or something else unparsable: use it as written
  }
  name = name.split('/').at(-1)!.replace(/[@:].*$/, '');
  if (/^(sha256)?[0-9a-f]{12,64}$/.test(name)) name = name.slice(0, 12);
  return name === '' ? '' : `${name}-`;
}
