import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { useBusyboxFixture, shIn } from './busybox-rootfs.js';

/** What a Dockerfile or an image controls must neither hang the runtime nor reach the host. */
const fx = useBusyboxFixture({ noLeftoverCgroups: true });

const capStatus = (text: string, key: string): string => text.split('\n').find((l) => l.startsWith(`${key}:\t`))?.split('\t')[1] ?? '';

describe('working directory', () => {
  it('one that procfs cannot create fails at once with one line naming it (it used to spin forever)', async () => {
    for (const cwd of ['/proc/nope', '/proc/self/fd/19', '/proc/nope/deeper']) {
      const t0 = Date.now();
      const e = await shIn(fx, 'true', { cwd }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(FailedPreconditionError);
      expect((e as Error).message).toBe(`cannot use working directory ${cwd}: ENOENT`);
      expect(Date.now() - t0).toBeLessThan(5000);
    }
  }, 30_000);

  it('no descriptor of the helper leads the command out of its root (runc CVE-2024-21626)', async () => {
    for (let fd = 0; fd < 32; fd++) {
      const r = await shIn(fx, 'cat /marker', { cwd: `/proc/self/fd/${fd}` }).catch((err: unknown) => err);
      // Either refused, or a directory inside the container's root (none is today).
      if (r instanceof Error) expect(r.message).toMatch(new RegExp(`^cannot use working directory /proc/self/fd/${fd}: E[A-Z]+$`));
      else expect(r.out).toBe('this is the rootfs\n');
    }
  }, 60_000);
});

describe('image files', () => {
  it('an /etc/hosts that points into /proc leaves the image alone instead of hanging the helper', async () => {
    const overlay = fx.overlay();
    mkdirSync(join(overlay.upper, 'etc'), { recursive: true });
    symlinkSync('/proc/nope/hosts', join(overlay.upper, 'etc/hosts'));
    const r = await shIn(fx, 'cat /etc/hostname; test -e /etc/hosts || echo no-hosts', { hostname: 'h1' }, { overlay });
    expect(r.exitCode).toBe(0);
    expect(r.out).toBe('h1\nno-hosts\n');
  }, 20_000);
});

describe('capabilities', () => {
  it('--cap-add ALL compiles its seccomp filter and runs with every capability tsbuild holds', async () => {
    const r = await shIn(fx, 'cat /proc/self/status; unshare -m true && echo unshare-ok', { capabilities: { add: ['ALL'] } });
    expect(r.exitCode).toBe(0);
    const own = readFileSync('/proc/self/status', 'utf8');
    expect(capStatus(r.out, 'CapEff')).toBe(capStatus(own, 'CapPrm'));
    expect(capStatus(r.out, 'Seccomp')).toBe('2');
    expect(r.out).toContain('unshare-ok'); // CAP_SYS_ADMIN's syscalls let through by the filter
  });
});

describe('user', () => {
  it('an id the kernel cannot take is refused before anything starts, instead of wrapping to 32 bits', async () => {
    await expect(shIn(fx, 'id -u', { user: { uid: 99999999999, gid: 1 } })).rejects.toThrow(new InvalidArgumentError('run: uid 99999999999 is not an id from 0 to 4294967294'));
    await expect(shIn(fx, 'id -u', { user: { uid: 1, gid: 4294967295 } })).rejects.toThrow(/^run: gid 4294967295 /);
    await expect(shIn(fx, 'id -u', { user: { uid: 1, gid: 1, additionalGids: [-1] } })).rejects.toThrow(/^run: additional gid -1 /);
    const r = await shIn(fx, 'id -u; id -g', { user: { uid: 4294967294, gid: 4294967294 } });
    expect(r.out).toBe('4294967294\n4294967294\n');
  });
});
