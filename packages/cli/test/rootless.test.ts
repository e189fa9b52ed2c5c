// Rootless tsbuild (issue 17), run as a real unprivileged user made for the test: its commands
// re-execute themselves in a user namespace over the user's /etc/subuid range, its store is
// ~/.local/share/tsbuild, RUN's network is slirp4netns. Each result is compared with root's.
import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getXattr, listXattrs, setXattr } from '@tsbuild/linux';
import { closeServer, type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
import { BIN, HELLO, IMAGE_ID_LINE, REPO, type Result, TestStore } from './harness.js';
import { collect, createUser, mountsMentioning, processesOf, removeUser, runAs, spawnAs, type TestUser, userEnv, waitFor } from './rootless-user.js';

const DIFFERENTIAL = path.join(REPO, 'fixtures/differential');
/** The fixtures differential.test.ts builds, with its build argument for `args`. */
const FIXTURES = ['basic', 'copy', 'copy-fidelity', 'copy-metadata', 'args', 'multistage', 'config', 'dockerignore', 'run-mounts', 'user-workdir', 'add-files', 'heredoc'];

const sh = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
};

/** stderr is exactly one line, `Error: ` and the expected text, and the status is 1. */
function expectOneLineError(r: Result, pattern: RegExp): void {
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^Error: /);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(1);
}

/** The address of the host's interface that carries its default route (eth0 here), else its first non-loopback IPv4. */
function hostAddress(): string {
  const routes = JSON.parse(spawnSync('ip', ['-j', '-4', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout || '[]') as { dev?: string }[];
  const ifaces = os.networkInterfaces();
  for (const name of [routes[0]?.dev, ...Object.keys(ifaces)]) {
    const a = name === undefined ? undefined : ifaces[name]?.find((i) => i.family === 'IPv4' && !i.internal);
    if (a !== undefined) return a.address;
  }
  throw new Error('the host has no non-loopback IPv4 address');
}

describe('rootless tsbuild as an ordinary user', () => {
  const root = new TestStore();
  let user: TestUser;
  /** The user's default store. */
  let store: string;
  /** A directory the user owns, for contexts and archives. */
  let work: string;
  const as = (args: string[], opts: Parameters<typeof runAs>[2] = {}): Promise<Result> => runAs(user, args, opts);
  const ok = async (r: Promise<Result>): Promise<Result> => {
    const res = await r;
    expect(res.stderr.replace(/^Warning: .*\n/gm, ''), res.stderr).toBe('');
    expect(res.code, res.stderr).toBe(0);
    return res;
  };
  /** A context with these files, owned by the user. */
  const context = async (files: Record<string, string>): Promise<string> => {
    const dir = await fsp.mkdtemp(path.join(work, 'ctx-'));
    for (const [name, content] of Object.entries(files)) await fsp.writeFile(path.join(dir, name), content);
    sh('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
    return dir;
  };
  /**
   * A layer (default: the last) of an image of the user's store, saved by the user as an
   * oci-archive (or of root's store, saved by root): the blob's path.
   */
  const layerBlob = async (image: string, n = -1, of: 'user' | 'root' = 'user'): Promise<string> => {
    const dir = await fsp.mkdtemp(path.join(work, 'save-'));
    sh('chown', [`${user.uid}:${user.gid}`, dir]);
    const save = ['save', '--format', 'oci-archive', '-o', path.join(dir, 'img.tar'), image];
    await ok(of === 'user' ? as(save) : root.run(save));
    sh('tar', ['-xf', path.join(dir, 'img.tar'), '-C', dir]);
    const blob = (d: string): string => path.join(dir, 'blobs/sha256', d.replace('sha256:', ''));
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
    return blob(manifest.layers.at(n)!.digest);
  };
  /** The last layer's entries: `tar -tv --numeric-owner` lines. */
  const lastLayer = async (image: string): Promise<string[]> => sh('tar', ['-tv', '--numeric-owner', '-f', await layerBlob(image)]).trim().split('\n');
  const layerDigests = async (r: Promise<Result>): Promise<string[]> => {
    const m = JSON.parse((await ok(r)).stdout) as { Manifest: { layers: { digest: string }[] } };
    return m.Manifest.layers.map((l) => l.digest);
  };

  beforeAll(async () => {
    user = await createUser('tsrl');
    store = path.join(user.home, '.local/share/tsbuild');
    work = path.join(user.home, 'work');
    await fsp.mkdir(work);
    sh('chown', [`${user.uid}:${user.gid}`, work]);
    // The same busybox image for both: made in root's store, loaded from an archive by the user.
    await root.importBusybox();
    const archive = path.join(work, 'busybox.tar');
    expect((await root.run(['save', '--format', 'oci-archive', '-o', archive, 'busybox'])).code).toBe(0);
    await fsp.chmod(archive, 0o644);
    expect((await as(['load', '-i', archive])).stdout).toContain('Loaded image: docker.io/library/busybox:latest');
  }, 60_000);

  afterAll(async () => {
    if (user !== undefined) await removeUser(user);
    await root.cleanup();
  }, 60_000);

  it('has a user with subordinate ids (as useradd gives on Debian) and a store in its home', async () => {
    expect(user.uid).toBeGreaterThan(0);
    expect(user.subuid?.count).toBeGreaterThan(1000);
    expect(user.subgid?.count).toBeGreaterThan(1000);
    const st = await fsp.stat(path.join(store, 'blobs/sha256'));
    expect(st.uid).toBe(user.uid);
  });

  it('fixtures/hello and the differential fixtures build with the image IDs of root builds (--timestamp 0)', async () => {
    // Copies the user owns; the metadata git does not keep is added as differential.test.ts does.
    const ctxs = path.join(work, 'fixtures');
    await fsp.mkdir(ctxs);
    sh('cp', ['-a', HELLO, path.join(ctxs, 'hello')]);
    for (const name of FIXTURES) sh('cp', ['-a', path.join(DIFFERENTIAL, name), path.join(ctxs, name)]);
    const meta = path.join(ctxs, 'copy-metadata/meta');
    setXattr(path.join(meta, 'xattr.txt'), 'user.note', 'kept');
    setXattr(path.join(meta, 'sub'), 'user.dir', 'kept too');
    sh('setcap', ['cap_net_bind_service=+ep', path.join(meta, 'cap-bin')]);
    await fsp.link(path.join(meta, 'hl-a'), path.join(meta, 'hl-b'));
    await fsp.symlink('xattr.txt', path.join(meta, 'old-link'));
    await fsp.lutimes(path.join(meta, 'old-link'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    sh('chown', ['-R', `${user.uid}:${user.gid}`, ctxs]);
    // chown clears file capabilities (the kernel drops security.capability on a change of owner).
    sh('setcap', ['cap_net_bind_service=+ep', path.join(meta, 'cap-bin')]);

    const names = ['hello', ...FIXTURES];
    const differ: string[] = [];
    for (const name of names) {
      const args = ['build', '-q', '--timestamp', '0', ...(name === 'args' ? ['--build-arg', 'VERSION=2.5'] : []), '-t', `fx-${name}`, path.join(ctxs, name)];
      const asRoot = await root.run(args);
      expect(asRoot.code, `${name} as root: ${asRoot.stderr}`).toBe(0);
      const rootless = await as(args);
      expect(rootless.code, `${name} rootless: ${rootless.stderr}`).toBe(0);
      const a = asRoot.stdout.trim().split('\n').at(-1)!;
      const b = rootless.stdout.trim().split('\n').at(-1)!;
      expect(b).toMatch(IMAGE_ID_LINE);
      if (a !== b) differ.push(`${name}: root ${a}, rootless ${b}`);
    }
    // No fixture needs a device node or a trusted.* xattr, so nothing is allowed to differ.
    expect(differ).toEqual([]);
    // The same IDs mean the file capability is in the rootless layer as root has it: read inside
    // the namespace, a capability written by the host's root is presented as the plain v2 form.
    const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsbuild-rootless-layer-'));
    try {
      sh('tar', ['--xattrs', '--xattrs-include=security.capability', '-xf', await layerBlob('fx-copy-metadata', 2), '-C', out]);
      expect(sh('getcap', [path.join(out, 'files/cap-bin')])).toContain('cap_net_bind_service=ep');
    } finally {
      await fsp.rm(out, { recursive: true, force: true });
    }
  }, 300_000);

  it('RUN is uid 0 inside; the host sees the user as its root and subordinate ids for the others', async () => {
    const child = spawnAs(user, ['run', '--rm', 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; sleep 7 & su app -s /bin/sh -c "exec sleep 8" & wait']);
    const done = collect(child);
    const sleeper = (arg: string): number | undefined =>
      processesOf(user).find((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === `sleep\0${arg}\0`;
        } catch {
          return false;
        }
      });
    const uidOf = (pid: number): number[] => /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!.trim().split(/\s+/).map(Number);
    const asRoot = await waitFor('the container\'s root sleep', () => sleeper('7'));
    const asApp = await waitFor('the container\'s app sleep', () => sleeper('8'));
    expect(uidOf(asRoot)).toEqual([user.uid, user.uid, user.uid, user.uid]);
    const app = user.subuid!.start + 1000 - 1;
    expect(uidOf(asApp)).toEqual([app, app, app, app]);
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    expect(lines[0]).toBe('0');
    expect(lines.slice(1, 3)).toEqual([`0 ${user.uid} 1`, `1 ${user.subuid!.start} ${user.subuid!.count}`]);
    expect(lines.slice(3, 5)).toEqual([`0 ${user.gid} 1`, `1 ${user.subgid!.start} ${user.subgid!.count}`]);
  }, 60_000);

  it('chown 1000:1000 in RUN lands as 1000:1000 in the layer; whiteouts and opaque dirs give root\'s layer digests', async () => {
    const dockerfile = [
      'FROM busybox',
      'RUN mkdir -p /d/sub && touch /d/old /d/sub/old && echo data > /owned && chown 1000:1000 /owned',
      // A whiteout (rm of a lower file), an opaque directory (a lower directory removed and made
      // again), and /bin likewise, with a copy of busybox since /bin/sh goes with it.
      'RUN rm /bin/ls && rm -rf /d && mkdir /d && touch /d/new && cp /bin/busybox /busybox && /busybox rm -rf /bin && /busybox mkdir /bin && /busybox touch /bin/new && /busybox rm /busybox',
      '',
    ].join('\n');
    const ctx = await context({ Dockerfile: dockerfile });
    const args = ['build', '-q', '--timestamp', '0', '-t', 'layers', ctx];
    const rootId = (await root.run(args)).stdout.trim();
    const id = (await ok(as(args))).stdout.trim();
    expect(id).toMatch(IMAGE_ID_LINE);
    expect(id).toBe(rootId);
    expect(await layerDigests(as(['inspect', 'layers']))).toEqual(await layerDigests(root.run(['inspect', 'layers'])));

    const last = await lastLayer('layers');
    expect(last.some((l) => / bin\/\.wh\.\.wh\.\.opq$/.test(l))).toBe(true);
    expect(last.some((l) => / d\/\.wh\.\.wh\.\.opq$/.test(l))).toBe(true);
    expect(last.some((l) => / bin\/new$/.test(l))).toBe(true);
    expect(last.some((l) => / busybox$/.test(l))).toBe(false);
    // The chown is in the previous layer: a layer of its own with `rm /bin/ls` as a whiteout.
    const ctx2 = await context({ Dockerfile: 'FROM busybox\nRUN echo data > /owned && chown 1000:1000 /owned && rm /bin/ls\n' });
    const args2 = ['build', '-q', '--timestamp', '0', '-t', 'owned', ctx2];
    expect((await ok(as(args2))).stdout.trim()).toBe((await root.run(args2)).stdout.trim());
    const owned = await lastLayer('owned');
    expect(owned.find((l) => / owned$/.test(l))).toMatch(/^-rw-r--r-- 1000\/1000 /);
    expect(owned.some((l) => / bin\/\.wh\.ls$/.test(l))).toBe(true);
    expect(await layerDigests(as(['inspect', 'owned']))).toEqual(await layerDigests(root.run(['inspect', 'owned'])));
    // On the host the store's copy belongs to a subordinate id: uid 1000 inside is start + 999.
    const sub = `${user.subuid!.start + 999}:${user.subgid!.start + 999}`;
    const hostOwners = sh('find', [store, '-name', 'owned', '-type', 'f', '-printf', '%U:%G\\n']).trim().split('\n');
    expect(hostOwners.length).toBeGreaterThan(0);
    expect(new Set(hostOwners)).toEqual(new Set([sub]));
  }, 120_000);

  it('whiteouts and opaque dirs hide lower files rootless, in its own snapshots and in root\'s layers it applies; device nodes are left out', async () => {
    const lower = ['FROM busybox', 'RUN mkdir -p /d/sub && touch /d/old /d/sub/old', 'RUN rm /bin/ls && rm -rf /d && mkdir /d && touch /d/new'];
    const look = 'RUN ls -a /d > /seen && if test -e /bin/ls; then echo ls-is-back >> /seen; fi && cat /seen';
    // in one rootless build: the next RUN's lower layers are the user-namespace overlay's upperdirs
    const own = await ok(as(['build', '--no-cache', await context({ Dockerfile: [...lower, look, ''].join('\n') })]));
    expect(own.stdout).toContain('.\n..\nnew\n');
    expect(own.stdout).not.toMatch(/^(old|sub|ls-is-back)$/m);

    // root's image, with a device node, applied by the user from an archive
    const ctx = await context({ Dockerfile: [...lower, 'RUN mknod /devnode c 1 3', ''].join('\n') });
    expect((await root.run(['build', '-q', '--timestamp', '0', '-t', 'root-lower', ctx])).code).toBe(0);
    const archive = path.join(work, 'root-lower.tar');
    expect((await root.run(['save', '--format', 'oci-archive', '-o', archive, 'root-lower'])).code).toBe(0);
    await fsp.chmod(archive, 0o644);
    await ok(as(['load', '-i', archive]));
    const upper = await context({ Dockerfile: `FROM root-lower\n${look}\n` });
    const args = ['build', '--timestamp', '0', upper];
    const mine = await ok(as(args));
    expect(mine.stdout).toContain('.\n..\nnew\n');
    expect(mine.stdout).not.toMatch(/^(old|sub|ls-is-back)$/m);
    expect(mine.stdout.trim().split('\n').at(-1)).toBe((await root.run(args)).stdout.trim().split('\n').at(-1));
    // A user namespace cannot make a device node (mknod needs CAP_MKNOD in the initial
    // namespace): applying the layer leaves it out, as moby and containers-storage do rootless.
    // The image is unchanged (its layers are the blobs as root made them); only what a rootless
    // RUN sees lacks the node.
    const probe = ['run', '--rm', 'root-lower', 'sh', '-c', 'if test -c /devnode; then echo device; else echo no-device; fi'];
    expect((await root.run(probe)).stdout).toBe('device\n');
    expect((await ok(as(probe))).stdout).toBe('no-device\n');
    const refused = await as(['run', '--rm', 'busybox', 'mknod', '/x', 'c', '1', '3']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Operation not permitted/);
  }, 120_000);

  it('a trusted.* xattr is a kernel-rooted difference: a rootless RUN that changes the file drops it, so the image differs from root\'s', async () => {
    // trusted.* needs CAP_SYS_ADMIN in the initial user namespace (xattr(7)): root of a user
    // namespace can neither read nor write it, so the rootless apply leaves it out (apply.ts) and
    // overlay's copy-up has none to copy. The user.* one is kept on both sides.
    const rootfs = path.join(root.tmp, 'rootfs-trusted');
    sh('cp', ['-a', path.join(root.tmp, 'rootfs-busybox'), rootfs]);
    await fsp.writeFile(path.join(rootfs, 'tx'), 'x\n');
    await fsp.writeFile(path.join(rootfs, 'ux'), 'u\n');
    setXattr(path.join(rootfs, 'tx'), 'trusted.test', 'kept by root');
    setXattr(path.join(rootfs, 'ux'), 'user.test', 'kept by both');
    expect((await root.run(['import', rootfs, 'trusted-base'])).code).toBe(0);
    const archive = path.join(work, 'trusted-base.tar');
    expect((await root.run(['save', '--format', 'oci-archive', '-o', archive, 'trusted-base'])).code).toBe(0);
    await fsp.chmod(archive, 0o644);
    await ok(as(['load', '-i', archive]));
    const ctx = await context({ Dockerfile: 'FROM trusted-base\nRUN chmod 600 /tx /ux\n' });
    const args = ['build', '-q', '--timestamp', '0', '-t', 'trusted-child', ctx];
    const rootId = (await root.run(args)).stdout.trim();
    const id = (await ok(as(args))).stdout.trim();
    expect(id).toMatch(IMAGE_ID_LINE);
    expect(id).not.toBe(rootId);
    const xattrsOf = async (of: 'user' | 'root'): Promise<Record<string, string>> => {
      const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsbuild-rootless-layer-'));
      try {
        sh('tar', ['--xattrs', '--xattrs-include=*', '-xf', await layerBlob('trusted-child', -1, of), '-C', out]);
        const res: Record<string, string> = {};
        for (const f of ['tx', 'ux']) {
          expect((await fsp.stat(path.join(out, f))).mode & 0o777).toBe(0o600);
          for (const n of listXattrs(path.join(out, f))) res[`${f} ${n}`] = getXattr(path.join(out, f), n)?.toString() ?? '';
        }
        return res;
      } finally {
        await fsp.rm(out, { recursive: true, force: true });
      }
    };
    expect(await xattrsOf('root')).toEqual({ 'tx trusted.test': 'kept by root', 'ux user.test': 'kept by both' });
    expect(await xattrsOf('user')).toEqual({ 'ux user.test': 'kept by both' });
  }, 120_000);

  describe('network', () => {
    let server: Server;
    let port: number;
    const token = `served-${process.pid}-${Date.now()}`;
    beforeAll(async () => {
      server = createServer((_req, res) => res.end(token));
      await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
      port = (server.address() as { port: number }).port;
    });
    afterAll(async () => closeServer(server));

    it('private (the rootless default) reaches a server on the host\'s address, not the host\'s loopback', async () => {
      const host = hostAddress();
      for (const flags of [[], ['--network', 'private']]) {
        const ctx = await context({
          Dockerfile: [
            'FROM busybox',
            `RUN wget -q -O- http://${host}:${port}/ > /got && cat /got`,
            // 10.0.2.2 would be the host's 127.0.0.1 without slirp4netns' --disable-host-loopback
            `RUN timeout 10 wget -q -O- http://10.0.2.2:${port}/; echo "gateway=$?"; timeout 10 wget -q -O- http://127.0.0.1:${port}/; echo "loopback=$?"`,
            '',
          ].join('\n'),
        });
        const r = await as(['build', '--no-cache', ...flags, ctx]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain(token);
        // (the step's own text, echoed by the build, has "$?" where these have a number)
        expect(r.stdout).toMatch(/^gateway=[1-9]\d*$/m);
        expect(r.stdout).toMatch(/^loopback=[1-9]\d*$/m);
        expect(r.stdout.split(token)).toHaveLength(2);
      }
    }, 90_000);

    it('host shares the host\'s network, loopback included', async () => {
      const r = await ok(as(['run', '--rm', '--network', 'host', 'busybox', 'wget', '-q', '-O-', `http://127.0.0.1:${port}/`]));
      expect(r.stdout).toBe(token);
    }, 60_000);

    it('none has no route', async () => {
      const host = hostAddress();
      const r = await as(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', `cat /proc/net/route; timeout 10 wget -q -O- http://${host}:${port}/ && echo REACHED`]);
      expect(r.stdout).not.toContain('REACHED');
      expect(r.stdout).not.toContain(token);
      // /proc/net/route: the header line only
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/unreachable/i);
      expect(r.code).not.toBe(0);
    }, 60_000);
  });

  it('RUN gets docker\'s default capabilities and the seccomp filter, as for root', async () => {
    const r = await ok(as(['run', '--rm', 'busybox', 'sh', '-c', 'grep -E "^(CapEff|CapBnd|Seccomp|NoNewPrivs):" /proc/self/status; unshare -U true 2>&1; echo unshare=$?']));
    // docker's default set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP).
    expect(r.stdout).toMatch(/^CapEff:\s+00000000a80425fb$/m);
    expect(r.stdout).toMatch(/^CapBnd:\s+00000000a80425fb$/m);
    expect(r.stdout).toMatch(/^Seccomp:\s+2$/m);
    // the default filter refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, as docker's does
    expect(r.stdout).toMatch(/unshare=1$/m);
  }, 60_000);

  it('--init runs the init as PID 1 rootless too, as the container\'s process (its filter and capabilities)', async () => {
    const r = await ok(as(['run', '--rm', '--init', 'busybox', 'sh', '-c', 'cat /proc/1/comm; echo $PPID; grep -E "^(CapEff|Seccomp):" /proc/1/status']));
    expect(r.stdout).toBe('init\n1\nCapEff:\t00000000a80425fb\nSeccomp:\t2\n');
    const t = await as(['run', '--rm', '-t', '--init', 'busybox', 'sh', '-c', 'read -r _ _ _ _ pgrp _ _ tpgid _ < /proc/$$/stat; [ "$pgrp" = "$tpgid" ] && echo foreground']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toBe('foreground\r\n');
  }, 60_000);

  it('resource limits that cannot be set rootless are one warning line; the command still runs', async () => {
    const r = await as(['run', '--rm', '--memory', '64m', '--pids-limit', '50', '--cpus', '0.5', 'busybox', 'echo', 'limited']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('limited\n');
    // No cgroup is delegated to the test user: none can be made, which is said once.
    expect(r.stderr).toMatch(/^Warning: resource limits are not applied: .*rootless/);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  }, 60_000);

  describe('registry and store commands', () => {
    let reg: RunningRegistry;
    beforeAll(async () => {
      reg = await startRegistry();
    }, 30_000);
    afterAll(async () => reg.stop());

    it('push, pull, images, diff, save, load, prune and fsck as the user', async () => {
      const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo pushed > /pushed && rm /bin/ls\n' });
      const id = (await ok(as(['build', '-q', '--timestamp', '0', '-t', 'topush', ctx]))).stdout.trim();
      const dest = `127.0.0.1:${reg.port}/rootless/topush:1`;
      const pushed = await as(['push', '--tls-verify=false', 'topush', dest]);
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(pushed.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
      // root pulls what the user pushed: the same image
      const rootPull = await root.run(['pull', '-q', '--tls-verify=false', dest]);
      expect(rootPull.stdout.trim()).toBe(id);
      await ok(as(['rmi', 'topush']));
      await ok(as(['prune']));
      const pulled = await as(['pull', '-q', '--tls-verify=false', dest]);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(pulled.stdout.trim()).toBe(id);
      expect((await ok(as(['images']))).stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${reg.port}/rootless/topush\\s+1\\s+${id.slice(0, 12)}`));
      const diff = JSON.parse((await ok(as(['diff', '--format', 'json', dest]))).stdout) as unknown;
      expect(JSON.stringify(diff)).toContain('pushed');
      expect(JSON.stringify(diff)).toContain('bin/ls');
      const archive = path.join(work, 'topush.tar');
      await ok(as(['save', '--format', 'docker-archive', '-o', archive, dest]));
      await ok(as(['rmi', dest]));
      await ok(as(['prune']));
      expect((await as(['images'])).stdout).not.toContain(id.slice(0, 12));
      expect((await ok(as(['load', '-i', archive]))).stdout).toContain(dest);
      expect((await ok(as(['inspect', dest]))).stdout).toContain(id);
      const fsck = await as(['fsck']);
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
      // every file of the store is the user's or one of its subordinate ids
      const owners = new Set(sh('find', [store, '-printf', '%U\\n']).trim().split('\n').map(Number));
      for (const o of owners) expect(o === user.uid || (o >= user.subuid!.start && o < user.subuid!.start + user.subuid!.count), String(o)).toBe(true);
    }, 120_000);
  });

  it('working containers: from, run, copy, config, commit; unshare; mount outside unshare is refused', async () => {
    const name = (await ok(as(['from', '-q', '--name', 'wc', 'busybox']))).stdout.trim();
    expect(name).toBe('wc');
    await ok(as(['run', 'wc', 'sh', '-c', 'echo ran > /ran && chown 1000:1000 /ran']));
    const ctx = await context({ 'copied.txt': 'copied\n' });
    await ok(as(['copy', 'wc', path.join(ctx, 'copied.txt'), '/copied.txt']));
    await ok(as(['config', '--env', 'ROOTLESS=yes', '--cmd', 'cat /ran /copied.txt', 'wc']));
    const id = (await ok(as(['commit', '-q', 'wc', 'wc-image']))).stdout.trim();
    expect(id).toMatch(IMAGE_ID_LINE);
    const out = await ok(as(['run', '--rm', 'wc-image', 'sh', '-c', 'cat /ran /copied.txt; echo $ROOTLESS; stat -c %u:%g /ran']));
    expect(out.stdout).toBe('ran\ncopied\nyes\n1000:1000\n');

    expect((await ok(as(['unshare', 'id', '-u']))).stdout).toBe('0\n');
    const maps = (await ok(as(['unshare', 'cat', '/proc/self/uid_map']))).stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    expect(maps).toEqual([`0 ${user.uid} 1`, `1 ${user.subuid!.start} ${user.subuid!.count}`]);
    const ls = await ok(as(['unshare', '--mount', 'M=wc', 'sh', '-c', 'ls $M; cat $M/ran']));
    expect(ls.stdout.split('\n')).toEqual(expect.arrayContaining(['bin', 'etc', 'copied.txt', 'ran']));
    expect(ls.stdout).toContain('ran\n');

    expectOneLineError(await as(['mount', 'wc']), /rootless: a mount made by this command would vanish when it ends: run it in a `tsbuild unshare` session/);
    await ok(as(['rm', 'wc']));
  }, 120_000);

  describe('errors', () => {
    let nosub: TestUser;
    let tmp: string;
    beforeAll(async () => {
      nosub = await createUser('tsrn', ['-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0']);
      tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsbuild-rootless-'));
      await fsp.chmod(tmp, 0o755);
    }, 30_000);
    afterAll(async () => {
      if (nosub !== undefined) await removeUser(nosub);
      await fsp.rm(tmp, { recursive: true, force: true });
    }, 30_000);

    it('a user without subordinate ids', async () => {
      expect(nosub.subuid).toBeUndefined();
      const r = await runAs(nosub, ['images']);
      expectOneLineError(r, new RegExp(`^Error: rootless: no subordinate uids for ${nosub.name} in /etc/subuid: add a range as root`));
    }, 30_000);

    it('newuidmap not installed', async () => {
      // A PATH with what the re-execution needs (node for bin/tsbuild, setpriv, unshare, sh) but no newuidmap.
      const bin = path.join(tmp, 'no-newuidmap');
      await fsp.mkdir(bin);
      for (const tool of ['node', 'setpriv', 'unshare', 'sh', 'newgidmap']) await fsp.symlink(sh('sh', ['-c', `command -v ${tool}`]).trim(), path.join(bin, tool));
      const r = await as(['images'], { env: userEnv(user, { PATH: bin }) });
      expectOneLineError(r, /^Error: rootless: newuidmap is not installed: install Debian's uidmap package/);
    }, 30_000);

    it('newuidmap that cannot write the map (not setuid): unshare\'s failure, as one line', async () => {
      // A copy of newuidmap without its setuid bit: util-linux's unshare runs it, it is refused
      // writing /proc/PID/uid_map, and unshare fails.
      const bin = path.join(tmp, 'plain-newuidmap');
      await fsp.mkdir(bin);
      await fsp.copyFile('/usr/bin/newuidmap', path.join(bin, 'newuidmap'));
      await fsp.chmod(path.join(bin, 'newuidmap'), 0o755);
      const r = await as(['images'], { env: userEnv(user, { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin` }) });
      expectOneLineError(r, /^Error: rootless: cannot create the user namespace: (newuidmap|unshare): .*\(check the ranges in \/etc\/subuid/);
    }, 30_000);

    it('a layer whose owner is beyond the user\'s subordinate range: one line naming the entry', async () => {
      const small = await createUser('tsrs', ['-K', 'SUB_UID_COUNT=500', '-K', 'SUB_GID_COUNT=500']);
      try {
        expect(small.subuid?.count).toBe(500);
        const ctx = await root.context({ Dockerfile: 'FROM busybox\nRUN touch /f && chown 1000:1000 /f\n' });
        expect((await root.run(['build', '-q', '-t', 'beyond', ctx])).code).toBe(0);
        const archive = path.join(tmp, 'beyond.tar');
        expect((await root.run(['save', '--format', 'oci-archive', '-o', archive, 'beyond'])).code).toBe(0);
        await fsp.chmod(archive, 0o644);
        const loaded = await runAs(small, ['load', '-i', archive]);
        expect(loaded.code, loaded.stderr).toBe(0);
        // uid 1000 inside would be the 1000th subordinate id: the user has 500
        expectOneLineError(await runAs(small, ['run', '--rm', 'beyond', 'true']), /^Error: layer entry "f": its owner 1000:1000 is not mapped in this user namespace \(rootless, .*\/etc\/subuid/);
        // and nothing of the failed apply stays: only the base layer's snapshot is there
        const snaps = (await runAs(small, ['snapshots'])).stdout.trim().split('\n').slice(1);
        expect(snaps).toHaveLength(1);
      } finally {
        await removeUser(small);
      }
    }, 60_000);

    // user.max_user_namespaces is a per-user-namespace limit (kernel/ucount.c, user_table): root
    // of a user namespace may set it for that namespace, and it bounds every namespace made below
    // it. So the machine-wide value is never touched: the command runs in a namespace of its own
    // whose limit is 0, and there it sees user namespaces as disabled.
    it('user namespaces disabled: an ordinary user', async () => {
      // The namespace maps root and the test user to themselves (written from here, by root of the
      // initial namespace); its root sets the limit, then setpriv becomes the user with no capability.
      // sh was exec'd while its uid had no mapping, so it holds no capability (execve grants them
      // only to uid 0 of the namespace): once the maps are written it execs a shell again, as root there.
      const inner = `echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid ${user.uid} --regid ${user.gid} --clear-groups -- "$@"`;
      const script = `read go; exec sh -c '${inner}' sh "$@"`;
      const child = spawn('unshare', ['--user', '--', 'sh', '-c', script, 'sh', BIN, 'images'], { cwd: REPO, env: userEnv(user), stdio: ['pipe', 'pipe', 'pipe'] });
      const done = collect(child, null);
      // unshare execs sh in the same process: child.pid is in the new namespace
      const ours = readlinkSync('/proc/self/ns/user');
      await waitFor('the new user namespace', () => (readlinkSync(`/proc/${child.pid}/ns/user`) !== ours ? true : undefined));
      await fsp.writeFile(`/proc/${child.pid}/uid_map`, `0 0 1\n${user.uid} ${user.uid} 1\n`);
      await fsp.writeFile(`/proc/${child.pid}/gid_map`, `0 0 1\n${user.gid} ${user.gid} 1\n`);
      child.stdin!.end('go\n');
      expectOneLineError(await done, /^Error: rootless: user namespaces are disabled on this machine \(user\.max_user_namespaces is 0\)/);
    }, 30_000);

    it('user namespaces disabled: root of a user namespace without CAP_SYS_ADMIN', async () => {
      // --map-root-user: uid 0 there with every capability there; it sets the limit, then drops
      // every capability, as a container started without CAP_SYS_ADMIN is.
      const r = await collect(
        spawn('unshare', ['--user', '--map-root-user', '--', 'sh', '-c', 'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --inh-caps=-all --bounding-set=-all -- "$@"', 'sh', BIN, 'images'], {
          cwd: REPO,
          env: { PATH: process.env.PATH, HOME: '/root', TSBUILD_ROOT: path.join(tmp, 'store') },
          stdio: ['pipe', 'pipe', 'pipe'],
        }),
      );
      expectOneLineError(r, /^Error: rootless: user namespaces are disabled on this machine/);
    }, 30_000);
  });

  describe('nothing outlives a rootless command', () => {
    const leftovers = (): string[] => [...processesOf(user).map((p) => `process ${p}: ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ')}`), ...mountsMentioning(store)];
    const settled = async (): Promise<string[]> => {
      const deadline = Date.now() + 5000;
      let left = leftovers();
      while (left.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        left = leftovers();
      }
      return left;
    };

    it('after a build', async () => {
      const ctx = await context({ Dockerfile: 'FROM busybox\nRUN sleep 1 & echo bg\n' });
      await ok(as(['build', '-q', '--no-cache', ctx]));
      expect(await settled()).toEqual([]);
    }, 60_000);

    /** The outer tsbuild of a build whose RUN sleeps, once the sleep is running. */
    const longRun = async (detached = false): Promise<{ child: ReturnType<typeof spawnAs>; done: Promise<Result> }> => {
      const ctx = await context({ Dockerfile: 'FROM busybox\nRUN sleep 30\n' });
      const child = spawnAs(user, ['build', '--no-cache', ctx], { detached });
      const done = collect(child);
      await waitFor('the RUN\'s sleep', () =>
        processesOf(user).find((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\x0030\x00';
          } catch {
            return false;
          }
        }),
      );
      return { child, done };
    };

    it('after kill -9 of the outer tsbuild during a long RUN', async () => {
      const { child, done } = await longRun();
      // setpriv execs bin/tsbuild, which execs node: the child is the outer tsbuild itself.
      expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8')).toContain('run.cjs');
      process.kill(child.pid!, 'SIGKILL');
      expect((await done).signal).toBe('SIGKILL');
      expect(await settled()).toEqual([]);
      // and the store is usable and whole after it
      const again = await as(['images']);
      expect(again.code, again.stderr).toBe(0);
      expect((await ok(as(['fsck']))).stdout).toMatch(/ 0 problem\(s\)/);
    }, 60_000);

    it('after SIGTERM of the outer tsbuild, and after Ctrl-C (SIGINT to its process group), during a long RUN', async () => {
      for (const how of ['SIGTERM', 'SIGINT'] as const) {
        // detached: a process group of its own, as a terminal's foreground job has
        const { child, done } = await longRun(true);
        if (how === 'SIGTERM') process.kill(child.pid!, 'SIGTERM');
        else process.kill(-child.pid!, 'SIGINT');
        const r = await done;
        expect(r.code, `${how}: ${r.stderr}`).toBe(1);
        expect(r.stderr.trimEnd().split('\n').at(-1), how).toMatch(/^Error: cancelled/);
        expect(await settled(), how).toEqual([]);
      }
    }, 90_000);
  });
});
