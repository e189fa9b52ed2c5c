import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { ImageConfig } from '@tsbuild/oci';
import { Store, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, type BuildOptions } from '../../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../../fixtures/busybox-rootfs.mjs';

/**
 * One store per test file with a busybox base image; `buildIt` writes a context, builds it and
 * unpacks the image with skopeo + umoci (the reference tools) so tests assert the real result.
 */
export interface Harness {
  tmp: string;
  store: Store;
  snapshotter: OverlaySnapshotter;
  buildIt(files: Record<string, string | Buffer | { symlink: string } | { mode: number; content: string; mtime?: number }>, extra?: Partial<BuildOptions>): Promise<Built>;
  close(): Promise<void>;
}

export interface Built {
  imageId: string;
  config: ImageConfig;
  root: string;
  read(p: string): Promise<string>;
  exists(p: string): Promise<boolean>;
  lstat(p: string): Promise<import('node:fs').Stats>;
  ls(p: string): Promise<string[]>;
  output: string;
}

export async function openHarness(name: string): Promise<Harness> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), `tsbuild-${name}-`));
  const store = await Store.open(path.join(tmp, 'store'));
  const snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  let n = 0;
  return {
    tmp,
    store,
    snapshotter,
    async buildIt(files, extra = {}) {
      const dir = path.join(tmp, `ctx-${n++}`);
      await fsp.mkdir(dir, { recursive: true });
      for (const [name, content] of Object.entries(files)) {
        const p = path.join(dir, name);
        await fsp.mkdir(path.dirname(p), { recursive: true });
        if (typeof content === 'object' && 'symlink' in content) await fsp.symlink(content.symlink, p);
        else if (typeof content === 'object' && 'mode' in content) {
          await fsp.writeFile(p, content.content);
          await fsp.chmod(p, content.mode);
          if (content.mtime !== undefined) await fsp.utimes(p, content.mtime, content.mtime);
        } else await fsp.writeFile(p, content);
      }
      let output = '';
      const sink = new Writable({
        write: (c: Buffer, _e, cb) => {
          output += c.toString();
          cb();
        },
      });
      // A relative `dockerfile` is taken inside the context written here.
      const df = extra.dockerfile !== undefined && !path.isAbsolute(extra.dockerfile) ? { dockerfile: path.join(dir, extra.dockerfile) } : {};
      const r = await build({ store, snapshotter, context: dir, stdout: sink, stderr: sink, ...extra, ...df });
      const config = (await store.image(r.manifest).config()) as ImageConfig;
      const out = path.join(tmp, `unpack-${n++}`);
      await saveArchive(store, [{ descriptor: r.manifest }], `${out}.tar`, 'oci-archive');
      execFileSync('skopeo', ['copy', '-q', `oci-archive:${out}.tar`, `oci:${out}-oci:x`]);
      execFileSync('umoci', ['unpack', '--image', `${out}-oci:x`, out]);
      await fsp.rm(`${out}.tar`, { force: true });
      await fsp.rm(`${out}-oci`, { recursive: true, force: true });
      const root = path.join(out, 'rootfs');
      const abs = (p: string) => path.join(root, p);
      return {
        imageId: r.imageId,
        config,
        root,
        output,
        read: (p) => fsp.readFile(abs(p), 'utf8'),
        exists: async (p) => (await fsp.lstat(abs(p)).catch(() => undefined)) !== undefined,
        lstat: (p) => fsp.lstat(abs(p)),
        ls: async (p) => (await fsp.readdir(abs(p))).sort(),
      };
    },
    async close() {
      await fsp.rm(tmp, { recursive: true, force: true });
    },
  };
}
