import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
import { TestStore, mountsUnder } from './harness.js';

const t = new TestStore();
let reg: RunningRegistry | undefined;

beforeAll(async () => {
  await t.importBusybox();
  const ctx = await t.context({
    Dockerfile: 'FROM busybox\nCOPY big /big\nCOPY big /copy\nRUN rm /big && echo hi > /etc/greeting\n',
    big: 'x'.repeat(100_000),
  });
  const r = await t.run(['build', '-t', 'waste', ctx]);
  if (r.code !== 0) throw new Error(`build failed: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  for (const m of mountsUnder(t.root)) execFileSync('umount', ['-l', m]);
  await reg?.stop();
  await t.cleanup();
});

describe('tsbuild history', () => {
  it('prints one row per step, newest first, and stable JSON', async () => {
    const table = await t.run(['history', 'waste']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^LAYER\s+CREATED\s+CREATED BY\s+SIZE\s+EMPTY\s+COMMENT$/);
    expect(lines[1]).toContain('rm /big');
    const json = JSON.parse((await t.run(['history', '--format', 'json', 'waste'])).stdout) as { createdBy: string; emptyLayer: boolean; size: number; layer: string | null }[];
    expect(json).toHaveLength(4);
    expect(Object.keys(json[0]!)).toEqual(['created', 'createdBy', 'size', 'emptyLayer', 'comment', 'layer']);
    expect(json.every((r) => !r.emptyLayer && r.layer !== null && r.size > 0)).toBe(true);
  });
});

describe('tsbuild diff', () => {
  it('lists A/C/D per layer and reports the wasted bytes; colourless when piped', async () => {
    const r = await t.run(['diff', 'waste', '--layer', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\x1b[');
    expect(r.stdout).toMatch(/^\s+D\s+-rw-r--r--\s+0:0\s+100kB\s+\/big$/m);
    expect(r.stdout).toMatch(/^\s+A\s+-rw-r--r--\s+0:0\s+3B\s+\/etc\/greeting$/m);
    expect(r.stdout).toContain('(100000 bytes)');
    const json = JSON.parse((await t.run(['diff', 'waste', '--format', 'json'])).stdout) as { layers: unknown[]; waste: { wastedBytes: number; deletedBytes: number; duplicateBytes: number; efficiency: number } };
    expect(json.layers).toHaveLength(4);
    expect(json.waste).toMatchObject({ wastedBytes: 100_000, deletedBytes: 100_000, duplicateBytes: 100_000 });
    const tree = await t.run(['diff', 'waste', '--layer', '3', '--tree', '--path', 'etc/**']);
    expect(tree.stdout).toMatch(/^ {2}C drwxr-xr-x 0:0 - etc\/\n {6}A -rw-r--r-- 0:0 3B greeting$/m);
    expect(tree.stdout).not.toMatch(/^\s+D .*big$/m);
  });

  it('--max-wasted and --min-efficiency exit 1 with one line when the image is over the limit, 0 otherwise', async () => {
    const over = await t.run(['diff', 'waste', '--max-wasted', '99kB']);
    expect(over.code).toBe(1);
    expect(over.stderr.trim().split('\n')).toEqual(['Error: wasted space 100kB (100000 bytes) exceeds --max-wasted 99000 bytes']);
    expect((await t.run(['diff', 'waste', '--max-wasted', '100kB'])).code).toBe(0);
    const eff = await t.run(['diff', 'waste', '--min-efficiency', '0.99']);
    expect(eff.code).toBe(1);
    expect(eff.stderr).toMatch(/^Error: efficiency 0\.\d{4} is below --min-efficiency 0\.99\n$/);
    expect((await t.run(['diff', 'busybox', '--min-efficiency', '1'])).code).toBe(0);
    expect((await t.run(['diff', 'waste', '--max-wasted', 'lots'])).code).toBe(2);
  });

  it('compares two images: files and config fields', async () => {
    const r = await t.run(['diff', 'busybox', 'waste', '--format', 'json']);
    expect(r.code).toBe(0);
    const cmp = JSON.parse(r.stdout) as { files: { kind: string; path: string }[]; config: { field: string }[] };
    expect(cmp.files.map((f) => `${f.kind} ${f.path}`)).toEqual(['A copy', 'A etc/greeting']);
    expect(cmp.config.map((c) => c.field)).toContain('rootfs.diff_ids');
    const text = await t.run(['diff', 'busybox', 'waste']);
    expect(text.stdout).toMatch(/^Filesystem: A 2 {2}C 0 {2}D 0$/m);
  });

  it('reads docker:// images from a registry, storing nothing', async () => {
    reg = await startRegistry();
    // -D: push the layers as stored, so the remote listing can be compared with the local one byte for byte
    expect((await t.run(['push', '--tls-verify=false', '-q', '-D', 'waste', `${reg.host}/inspect/waste:1`])).code).toBe(0);
    const before = await fsp.readdir(path.join(t.root, 'blobs/sha256'));
    const remote = await t.run(['diff', '--tls-verify=false', '--format', 'json', `docker://${reg.host}/inspect/waste:1`]);
    expect(remote.code).toBe(0);
    const local = await t.run(['diff', '--format', 'json', 'waste']);
    expect(JSON.parse(remote.stdout)).toEqual(JSON.parse(local.stdout));
    const hist = await t.run(['history', '--tls-verify=false', `docker://${reg.host}/inspect/waste:1`]);
    expect(hist.stdout).toContain('rm /big');
    expect((await fsp.readdir(path.join(t.root, 'blobs/sha256'))).sort()).toEqual(before.sort());
  });
});

describe('tsbuild mount, umount, export', () => {
  it('mount prints a read-only mount of the flattened image; umount removes it', async () => {
    const m = await t.run(['mount', 'waste']);
    expect(m.code).toBe(0);
    const dir = m.stdout.trim();
    expect(dir.startsWith(path.join(t.root, 'mounts'))).toBe(true);
    expect(mountsUnder(t.root)).toEqual([dir]);
    expect(await fsp.readFile(path.join(dir, 'etc/greeting'), 'utf8')).toBe('hi\n');
    await expect(fsp.access(path.join(dir, 'big'))).rejects.toThrow();
    expect((await t.run(['mount'])).stdout).toContain(dir);
    const u = await t.run(['umount', 'waste']);
    expect(u.code).toBe(0);
    expect(mountsUnder(t.root)).toEqual([]);
    const again = await t.run(['umount', 'waste']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^Error: image [0-9a-f]{12} is not mounted/);
  });

  it('export -o writes the flattened tree as a tar', async () => {
    const out = path.join(t.tmp, 'rootfs.tar');
    const r = await t.run(['export', 'waste', '-o', out]);
    expect(r.code).toBe(0);
    const listed = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.replace(/\/$/, ''));
    expect(listed).toContain('copy');
    expect(listed).toContain('etc/greeting');
    expect(listed).not.toContain('big');
    expect(listed.some((l) => l.includes('.wh.'))).toBe(false);
    expect(new Set(listed).size).toBe(listed.length);
  });
});
