import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunSpec } from '../src/index.js';
import { mountsMentioning, useBusyboxFixture, shIn } from './busybox-rootfs.js';

const fx = useBusyboxFixture();
const host = mkdtempSync(join(os.tmpdir(), 'tsbuild-extra-mounts-'));
afterAll(() => {
  rmSync(host, { recursive: true, force: true });
});

const sh = (script: string, mounts: RunSpec['mounts']) => shIn(fx, script, { mounts });

describe('RunSpec.mounts', () => {
  it('binds a host directory read-write and a file read-only, and mounts a tmpfs; nothing stays mounted', async () => {
    const dir = join(host, 'cache');
    mkdirSync(dir);
    writeFileSync(join(dir, 'old'), 'kept\n');
    const secret = join(host, 'secret');
    writeFileSync(secret, 's3cret');
    const r = await sh('cat /cache/old; echo new > /cache/new; cat /run/secrets/s; echo; { echo x > /run/secrets/s; } 2>/dev/null || echo ro; echo t > /tmpfs/t; grep " /tmpfs " /proc/mounts | cut -d" " -f3', [
      { destination: '/cache', type: 'bind', source: dir, options: [] },
      { destination: '/run/secrets/s', type: 'bind', source: secret, options: ['ro'] },
      { destination: '/tmpfs', type: 'tmpfs', options: ['size=1m'] },
    ]);
    expect(r.err).toBe('');
    expect(r.out).toBe('kept\ns3cret\nro\ntmpfs\n');
    expect(readFileSync(join(dir, 'new'), 'utf8')).toBe('new\n');
    expect(readFileSync(secret, 'utf8')).toBe('s3cret');
    // The writes went to the mounts, not the upperdir; only the (empty) mountpoints were created there.
    expect(existsSync(join(r.upper, 'cache', 'new'))).toBe(false);
    expect(readFileSync(join(r.upper, 'run', 'secrets', 's'), 'utf8')).toBe('');
    expect(existsSync(join(r.upper, 'tmpfs', 't'))).toBe(false);
    expect(mountsMentioning(r.scratchDir)).toEqual([]);
  });

  it('rejects a relative destination and a bind without a source', async () => {
    await expect(sh('true', [{ destination: 'rel', type: 'tmpfs', options: [] }])).rejects.toThrow('run: mount destination must be absolute: rel');
    await expect(sh('true', [{ destination: '/x', type: 'bind', options: [] }])).rejects.toThrow('run: bind mount at /x needs an absolute source');
  });
});
