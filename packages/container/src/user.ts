import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, MAX_ID, isValidId } from '@tsbuild/oci';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /**
   * For RUN: the HOME runc gives a process whose environment has none (libcontainer's
   * setupUser): the home field of the passwd entry of the uid, else `/`.
   */
  home?: string;
}

/**
 * Resolves a USER or --chown value (`user`, `uid`, `user:group`, `uid:gid`) against the image's
 * /etc/passwd and /etc/group, read from the snapshot chain without mounting it (the nearest
 * snapshot that has the file wins; an overlay whiteout hides it). Numeric ids need no files.
 * For RUN the user's supplementary groups are included; `--chown` takes only uid and gid.
 */
export async function resolveUser(s: OverlaySnapshotter, snapshot: string | undefined, spec: string, chown = false): Promise<ResolvedUser> {
  const readTable = (file: string) => readTableFromChain(s, snapshot, file);
  if (spec === '') {
    if (chown) return { uid: 0, gid: 0, additionalGids: [] };
    return { uid: 0, gid: 0, additionalGids: [0], home: (await readTable('etc/passwd')).find((e) => e[2] === '0')?.[5] || '/' };
  }
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const id = idParser(spec);
  let passwd: string[][] | undefined;
  let group: string[][] | undefined;
  let home: string | undefined;
  let uid: number;
  let gid: number | undefined;
  let userName: string | undefined;
  if (numeric(u)) {
    uid = id(u, 'uid');
    passwd = await readTable('etc/passwd');
    const ent = passwd.find((e) => e[2] === u);
    if (ent) {
      userName = ent[0];
      home = ent[5];
      gid = id(ent[3] ?? '', 'gid', `passwd entry of ${ent[0]} in /etc/passwd`);
    }
  } else {
    passwd = await readTable('etc/passwd');
    const ent = passwd.find((e) => e[0] === u);
    if (!ent) throw new InvalidArgumentError(`unable to find user ${u}: no matching entries in passwd file`);
    userName = u;
    home = ent[5];
    uid = id(ent[2] ?? '', 'uid', `passwd entry of ${u} in /etc/passwd`);
    gid = id(ent[3] ?? '', 'gid', `passwd entry of ${u} in /etc/passwd`);
  }
  if (g !== undefined && g !== '') {
    if (numeric(g)) gid = id(g, 'gid');
    else {
      group = await readTable('etc/group');
      const ent = group.find((e) => e[0] === g);
      if (!ent) throw new InvalidArgumentError(`unable to find group ${g}: no matching entries in group file`);
      gid = id(ent[2] ?? '', 'gid', `group entry of ${g} in /etc/group`);
    }
  }
  // A numeric --chown uid without a group takes gid = uid, as docker does.
  gid ??= chown ? uid : 0;
  const additionalGids: number[] = [];
  if (!chown && userName !== undefined && (g === undefined || g === '')) {
    group ??= await readTable('etc/group');
    for (const e of group) {
      const members = (e[3] ?? '').split(',');
      if (members.includes(userName) && Number(e[2]) !== gid) additionalGids.push(id(e[2] ?? '', 'gid', `group entry of ${e[0]} in /etc/group`));
    }
  }
  // runc (and so buildah) always lists the primary group among the supplementary ones; checked
  // with buildah here: root → Groups 0, `USER 1000:10` → Groups 10, `USER app` → 10 1000.
  if (chown) return { uid, gid, additionalGids };
  additionalGids.push(gid);
  return { uid, gid, additionalGids, home: home || '/' };
}

/**
 * The owner of a directory WORKDIR makes under USER `spec`, as BuildKit's file operations
 * resolve it (solver/llbsolver/file/user_linux.go, readUser), checked with buildah 1.28 too: a
 * number is used as it is, a uid alone for both ids (`USER 4242` → 4242:4242); a name is looked
 * up, and one missing from /etc/passwd or /etc/group is no error here (root, or the user's own
 * group, stands for it): only a RUN as that user fails, as runc refuses it.
 */
export async function resolveOwner(s: OverlaySnapshotter, snapshot: string | undefined, spec: string): Promise<{ uid: number; gid: number }> {
  if (spec === '') return { uid: 0, gid: 0 };
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const id = idParser(spec);
  let uid = 0;
  let gid = 0;
  if (numeric(u)) uid = gid = id(u, 'uid');
  else {
    const ent = (await readTableFromChain(s, snapshot, 'etc/passwd')).find((e) => e[0] === u);
    if (ent) {
      uid = id(ent[2] ?? '', 'uid', `passwd entry of ${u} in /etc/passwd`);
      gid = id(ent[3] ?? '', 'gid', `passwd entry of ${u} in /etc/passwd`);
    }
  }
  if (g !== undefined && g !== '') {
    if (numeric(g)) gid = id(g, 'gid');
    else {
      const ent = (await readTableFromChain(s, snapshot, 'etc/group')).find((e) => e[0] === g);
      if (ent) gid = id(ent[2] ?? '', 'gid', `group entry of ${g} in /etc/group`);
    }
  }
  return { uid, gid };
}

function numeric(x: string): boolean {
  return /^\d+$/.test(x);
}

/** Parses an id of `spec`; a number beyond the 32-bit range would wrap on its way to the kernel: refuse it, naming it. */
function idParser(spec: string): (text: string, what: string, where?: string) => number {
  return (text, what, where = `user "${spec}"`) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !isValidId(n)) throw new InvalidArgumentError(`invalid ${where}: ${what} ${text} is not a number from 0 to ${MAX_ID}`);
    return n;
  };
}

async function readTableFromChain(s: OverlaySnapshotter, snapshot: string | undefined, file: string): Promise<string[][]> {
  return (await readFromChain(s, snapshot, file))?.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':')) ?? [];
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
