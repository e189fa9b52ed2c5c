import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { resolveOwner, resolveUser } from './user.js';

/** One snapshot whose fs holds the given /etc files: all resolveUser reads of a snapshotter. */
function oneSnapshot(files: Record<string, string>): { s: OverlaySnapshotter; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsbuild-user-'));
  mkdirSync(path.join(dir, 'etc'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, 'etc', name), text);
  const s = { fsDir: async () => dir, stat: async () => ({ parent: undefined }) } as unknown as OverlaySnapshotter;
  return { s, dir };
}

describe('resolveUser', () => {
  const { s, dir } = oneSnapshot({
    passwd: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nhuge:x:99999999999:1::/:/bin/sh\nbadgid:x:1001:-1::/:/bin/sh\n',
    group: 'root:x:0:\napp:x:1000:\nbig:x:4294967295:\n',
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes ids up to 4294967294, the highest a process can have', async () => {
    expect(await resolveUser(s, 'snap', '4294967294:4294967294')).toEqual({ uid: 4294967294, gid: 4294967294, additionalGids: [4294967294], home: '/' });
    expect(await resolveUser(s, 'snap', 'app')).toEqual({ uid: 1000, gid: 1000, additionalGids: [1000], home: '/home/app' });
  });

  it('refuses a uid or gid beyond 32 bits (it used to wrap: 99999999999 ran as 1215752191), naming the value', async () => {
    await expect(resolveUser(s, 'snap', '99999999999:1')).rejects.toThrow(new InvalidArgumentError('invalid user "99999999999:1": uid 99999999999 is not a number from 0 to 4294967294'));
    await expect(resolveUser(s, 'snap', '1:4294967295')).rejects.toThrow('invalid user "1:4294967295": gid 4294967295 is not a number from 0 to 4294967294');
    await expect(resolveUser(s, 'snap', '4294967296', true)).rejects.toThrow(/uid 4294967296 is not a number/);
  });

  it('refuses such ids in the image\'s passwd and group files, naming the entry', async () => {
    await expect(resolveUser(s, 'snap', 'huge')).rejects.toThrow('invalid passwd entry of huge in /etc/passwd: uid 99999999999 is not a number from 0 to 4294967294');
    await expect(resolveUser(s, 'snap', 'badgid')).rejects.toThrow('invalid passwd entry of badgid in /etc/passwd: gid -1 is not a number from 0 to 4294967294');
    await expect(resolveUser(s, 'snap', 'app:big')).rejects.toThrow('invalid group entry of big in /etc/group: gid 4294967295 is not a number from 0 to 4294967294');
  });

  it("gives RUN the HOME of the uid's passwd entry, / without one (runc's setupUser)", async () => {
    expect((await resolveUser(s, 'snap', '')).home).toBe('/root');
    expect((await resolveUser(s, 'snap', 'root')).home).toBe('/root');
    expect((await resolveUser(s, 'snap', '1000:0')).home).toBe('/home/app');
    expect((await resolveUser(s, 'snap', '4242')).home).toBe('/');
    expect((await resolveUser(s, 'snap', 'app', true)).home).toBeUndefined();
    const bare = oneSnapshot({});
    try {
      expect(await resolveUser(bare.s, 'snap', '')).toEqual({ uid: 0, gid: 0, additionalGids: [0], home: '/' });
    } finally {
      rmSync(bare.dir, { recursive: true, force: true });
    }
  });

  it("resolves WORKDIR's owner as BuildKit's file operations do: numbers as they are, a missing name is no error", async () => {
    expect(await resolveOwner(s, 'snap', '')).toEqual({ uid: 0, gid: 0 });
    expect(await resolveOwner(s, 'snap', 'app')).toEqual({ uid: 1000, gid: 1000 });
    expect(await resolveOwner(s, 'snap', '4242')).toEqual({ uid: 4242, gid: 4242 });
    expect(await resolveOwner(s, 'snap', '4242:7')).toEqual({ uid: 4242, gid: 7 });
    expect(await resolveOwner(s, 'snap', 'ghost')).toEqual({ uid: 0, gid: 0 });
    expect(await resolveOwner(s, 'snap', 'ghost:app')).toEqual({ uid: 0, gid: 1000 });
    expect(await resolveOwner(s, 'snap', 'app:ghostgroup')).toEqual({ uid: 1000, gid: 1000 });
    await expect(resolveOwner(s, 'snap', '99999999999')).rejects.toThrow('invalid user "99999999999": uid 99999999999 is not a number from 0 to 4294967294');
    await expect(resolveOwner(s, 'snap', 'huge')).rejects.toThrow('invalid passwd entry of huge in /etc/passwd: uid 99999999999');
  });

  it('names a user that is neither a number nor in /etc/passwd', async () => {
    await expect(resolveUser(s, 'snap', '-1')).rejects.toThrow('unable to find user -1: no matching entries in passwd file');
  });
});
