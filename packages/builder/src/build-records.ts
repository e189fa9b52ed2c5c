import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { NotFoundError } from '@tsbuild/oci';
import { randomHex } from '@tsbuild/linux';

/**
 * What a build keeps after it ends, for `tsbuild logs` and `tsbuild debug` (issue 19): one
 * directory per build under `<store root>/builds/<id>/`, and `builds/last` naming the latest.
 * Each part writes its own files there (logs/, debug/, build.json); `prune` removes records.
 */
export interface BuildRecord {
  /** 12 hex digits, as `tsbuild logs ID` and `tsbuild debug ID` take it. */
  id: string;
  /** The record's directory. */
  dir: string;
}

export class BuildRecords {
  readonly dir: string;

  constructor(storeRoot: string) {
    this.dir = path.join(storeRoot, 'builds');
  }

  /** A new, empty record, made the `last` one. */
  async create(): Promise<BuildRecord> {
    const id = randomHex(6);
    const dir = path.join(this.dir, id);
    await fsp.mkdir(dir, { recursive: true });
    // builds/last is replaced atomically: a reader sees the old id or the new one.
    const tmp = path.join(this.dir, `.last-${id}`);
    await fsp.writeFile(tmp, `${id}\n`);
    await fsp.rename(tmp, path.join(this.dir, 'last'));
    return { id, dir };
  }

  /** The record `idOrLast` names (`last`, a full id, or a unique prefix of one). */
  async open(idOrLast: string): Promise<BuildRecord> {
    let id = idOrLast;
    if (idOrLast === 'last') {
      id = (await fsp.readFile(path.join(this.dir, 'last'), 'utf8').catch(() => '')).trim();
      if (id === '') throw new NotFoundError('no build has been recorded in this store yet');
    }
    if (!/^[0-9a-f]{1,12}$/.test(id)) throw new NotFoundError(`build ${idOrLast}: not a build id (12 hex digits, or last)`);
    const matches = (await this.ids()).filter((i) => i.startsWith(id));
    if (matches.length === 0) throw new NotFoundError(`build ${idOrLast}: no such build in ${this.dir}`);
    if (matches.length > 1) throw new NotFoundError(`build ${idOrLast}: ambiguous, matches ${matches.join(', ')}`);
    return { id: matches[0]!, dir: path.join(this.dir, matches[0]!) };
  }

  /** Every record, oldest first (by the directory's mtime). */
  async list(): Promise<BuildRecord[]> {
    const out: { id: string; dir: string; t: number }[] = [];
    for (const id of await this.ids()) {
      const dir = path.join(this.dir, id);
      const st = await fsp.stat(dir).catch(() => undefined);
      if (st) out.push({ id, dir, t: st.mtimeMs });
    }
    return out.sort((a, b) => a.t - b.t).map(({ id, dir }) => ({ id, dir }));
  }

  /** Removes a record and its files; `last` goes with it when it named that record. */
  async remove(id: string): Promise<void> {
    await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
    const last = (await fsp.readFile(path.join(this.dir, 'last'), 'utf8').catch(() => '')).trim();
    if (last === id) await fsp.rm(path.join(this.dir, 'last'), { force: true });
  }

  private async ids(): Promise<string[]> {
    return (await fsp.readdir(this.dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{12}$/.test(n));
  }
}
