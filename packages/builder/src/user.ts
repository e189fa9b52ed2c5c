import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from '@tsbuild/oci';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

/**
 * Resolves a USER or --chown value (`user`, `uid`, `user:group`, `uid:gid`) against the image's
 * /etc/passwd and /etc/group, read from the snapshot chain without mounting it (the nearest
 * snapshot that has the file wins; an overlay whiteout hides it). Numeric ids need no files.
 * For RUN the user's supplementary groups are included; `--chown` takes only uid and gid.
 */
export async function resolveUser(s: OverlaySnapshotter, snapshot: string | undefined, spec: string, chown = false): Promise<ResolvedUser> {
  if (spec === '') return { uid: 0, gid: 0, additionalGids: chown ? [] : [0] };
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const numeric = (x: string) => /^\d+$/.test(x);
  let passwd: string[][] | undefined;
  let group: string[][] | undefined;
  const readTable = async (file: string) => (await readFromChain(s, snapshot, file))?.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':')) ?? [];
  let uid: number;
  let gid: number | undefined;
  let userName: string | undefined;
  if (numeric(u)) {
    uid = Number(u);
    passwd = await readTable('etc/passwd');
    const ent = passwd.find((e) => e[2] === u);
    if (ent) {
      userName = ent[0];
      gid = Number(ent[3]);
    }
  } else {
    passwd = await readTable('etc/passwd');
    const ent = passwd.find((e) => e[0] === u);
    if (!ent) throw new InvalidArgumentError(`unable to find user ${u}: no matching entries in passwd file`);
    userName = u;
    uid = Number(ent[2]);
    gid = Number(ent[3]);
  }
  if (g !== undefined && g !== '') {
    if (numeric(g)) gid = Number(g);
    else {
      group = await readTable('etc/group');
      const ent = group.find((e) => e[0] === g);
      if (!ent) throw new InvalidArgumentError(`unable to find group ${g}: no matching entries in group file`);
      gid = Number(ent[2]);
    }
  }
  // A numeric --chown uid without a group takes gid = uid, as docker does.
  gid ??= chown ? uid : 0;
  const additionalGids: number[] = [];
  if (!chown && userName !== undefined && (g === undefined || g === '')) {
    group ??= await readTable('etc/group');
    for (const e of group) {
      const members = (e[3] ?? '').split(',');
      if (members.includes(userName) && Number(e[2]) !== gid) additionalGids.push(Number(e[2]));
    }
  }
  // runc (and so buildah) always lists the primary group among the supplementary ones; checked
  // with buildah here: root → Groups 0, `USER 1000:10` → Groups 10, `USER app` → 10 1000.
  if (!chown) additionalGids.push(gid);
  return { uid, gid, additionalGids };
}

async function readFromChain(s: OverlaySnapshotter, snapshot: string | undefined, rel: string): Promise<string | undefined> {
  for (let name = snapshot; name !== undefined; ) {
    const p = path.join(await s.fsDir(name), rel);
    const st = await fsp.lstat(p).catch(() => undefined);
    if (st?.isFile()) return fsp.readFile(p, 'utf8');
    if (st?.isCharacterDevice() && st.rdev === 0) return undefined; // overlay whiteout
    name = (await s.stat(name)).parent;
  }
  return undefined;
}
