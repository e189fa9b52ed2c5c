import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, chmodSync, constants, copyFileSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { startChain } from '../src/helper-chain.js';
import { runHelperPath } from '../src/package-files.js';
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
      // fd 19 may be one of node's own descriptors in the helper (not a directory) or none.
      expect((e as Error).message).toMatch(new RegExp(`^cannot use working directory ${cwd}: (ENOENT|ENOTDIR)$`));
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

/** An overlay of the busybox rootfs plus the shared libraries node needs, so that node can start inside. */
function overlayWithNodeLibraries(): { upper: string; mounts: ReturnType<typeof fx.overlay>['mounts'] } {
  const o = fx.overlay();
  const libs = execFileSync('ldd', [process.execPath], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g);
  for (const [, lib] of libs) {
    const dest = join(o.upper, lib);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(realpathSync(lib), dest);
  }
  return o;
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/** The pid of the run helper a chain started for `target` waits in (its argv[0] names the link beside `target`). */
async function waitForHelper(target: string): Promise<number> {
  const argv0 = join(dirname(target), 'exe', 'run-helper');
  for (let i = 0; i < 500; i++) {
    for (const p of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      try {
        if (readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0] === argv0) return Number(p);
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no run helper for ${target}`);
}

describe("the runtime's own binary (runc CVE-2019-5736)", () => {
  it("the run helper runs from a read-only mount: its /proc/PID/exe, which a container reaches as /proc/self/exe, takes no write", async () => {
    const helper = runHelperPath();
    const before = sha256(helper);
    const target = join(fx.scratch(), 'rootfs');
    mkdirSync(target, { recursive: true });
    const chain = startChain({ kind: 'run', target }, { network: 'host', stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      // The helper waits for its request: until then it is the process a `RUN ["/proc/self/exe"]` would execute.
      const pid = await waitForHelper(target);
      const exe = `/proc/${pid}/exe`;
      expect(statSync(exe).ino).toBe(statSync(helper).ino);
      expect(() => accessSync(exe, constants.W_OK)).toThrow(expect.objectContaining({ code: 'EROFS' }));
      expect(() => openSync(exe, 'r+')).toThrow(expect.objectContaining({ code: expect.stringMatching(/^(EROFS|ETXTBSY)$/) }));
    } finally {
      await chain.abandon();
    }
    expect(sha256(helper)).toBe(before);
  });

  it('/proc/self/exe as the command, or as a #!/proc/self/exe interpreter (resolved by the kernel in the helper), is that helper: it finds no request and exits 125', async () => {
    const before = sha256(runHelperPath());
    const direct = await shIn(fx, '', { args: ['/proc/self/exe'] });
    expect(direct.exitCode).toBe(125);
    const o = fx.overlay();
    writeFileSync(join(o.upper, 'probe'), '#!/proc/self/exe\n');
    chmodSync(join(o.upper, 'probe'), 0o755);
    const script = await shIn(fx, '', { args: ['/probe'] }, { overlay: o });
    expect(script.exitCode).toBe(125);
    expect(sha256(runHelperPath())).toBe(before);
  });

  it('with an init, PID 1 (tini from the host) runs from a read-only mount too, and shows as init', async () => {
    // With every capability the command may open /proc/1/exe (ptrace's rules want the caller's
    // capabilities to cover the target's); by default it may not even read the link. The probe is
    // a copy of node inside the rootfs: the command is the init's child, so its /proc/self/exe
    // would be the init.
    const probe = `const fs = require('fs'); const r = { comm: fs.readFileSync('/proc/1/comm', 'utf8').trim() };
try { fs.accessSync('/proc/1/exe', fs.constants.W_OK); r.access = 'writable'; } catch (e) { r.access = e.code; }
console.log(JSON.stringify(r));`;
    const o = overlayWithNodeLibraries();
    copyFileSync(process.execPath, join(o.upper, 'node'));
    const r = await shIn(fx, '', { init: true, capabilities: { add: ['ALL'] }, args: ['/node', '-e', probe] }, { overlay: o });
    expect(r.err).toBe('');
    expect(JSON.parse(r.out)).toEqual({ comm: 'init', access: 'EROFS' });
  });

  it("none of the helper's descriptors can be executed, the ones of node's binary included", async () => {
    for (let fd = 3; fd < 12; fd++) {
      const r = await shIn(fx, '', { args: [`/proc/self/fd/${fd}`] });
      expect([126, 127], `/proc/self/fd/${fd}: ${r.err}`).toContain(r.exitCode);
    }
  }, 60_000);
});
