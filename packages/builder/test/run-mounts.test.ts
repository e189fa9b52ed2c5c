import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, openHarness } from './conformance/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness('run-mounts');
});
afterAll(() => h.close());

describe('RUN --mount', () => {
  it('type=cache persists between builds under <store>/cache-mounts and never reaches the layer', async () => {
    const df = 'FROM busybox\nARG N\nRUN --mount=type=cache,target=/var/cache/app,id=app echo "$N" >> /var/cache/app/log && cat /var/cache/app/log > /seen\n';
    await h.buildIt({ Dockerfile: df }, { buildArgs: { N: 'one' } });
    const r = await h.buildIt({ Dockerfile: df }, { buildArgs: { N: 'two' } });
    expect(await r.read('seen')).toBe('one\ntwo\n');
    expect(await r.exists('var/cache')).toBe(false);
    const dirs = await fsp.readdir(path.join(h.store.root, 'cache-mounts'));
    expect(dirs.some((d) => d.startsWith('app-'))).toBe(true);
  });

  it('type=cache honours mode, uid and gid on creation; an existing target keeps the image\'s directory', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/tmp/c,mode=0700,uid=5,gid=6 stat -c "%a %u %g" /tmp/c > /st\n' });
    expect(await r.read('st')).toBe('700 5 6\n');
    expect(await r.ls('tmp')).toEqual([]);
  });

  it('type=bind: the context by default, read-only; rw changes are discarded; from= a stage', async () => {
    const r = await h.buildIt({
      Dockerfile:
        'FROM busybox AS src\nRUN mkdir /out && echo built > /out/artifact\n' +
        'FROM busybox\nRUN --mount=target=/ctx cat /ctx/input.txt > /a && { touch /ctx/x 2>/dev/null || echo ro > /b; }\n' +
        'RUN --mount=type=bind,source=dir,target=/d,rw echo changed > /d/f && cat /d/f > /c\n' +
        'RUN --mount=type=bind,from=src,source=/out,target=/o cp /o/artifact /artifact\n',
      'input.txt': 'from context\n',
      'dir/f': 'original\n',
    });
    expect(await r.read('a')).toBe('from context\n');
    expect(await r.read('b')).toBe('ro\n');
    expect(await r.read('c')).toBe('changed\n');
    expect(await r.read('artifact')).toBe('built\n');
    for (const p of ['ctx', 'd', 'o']) expect(await r.exists(p)).toBe(false);
  });

  it('type=tmpfs gives an empty tmpfs whose files never reach the layer', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=tmpfs,target=/scratch,size=1m echo x > /scratch/f && grep " /scratch " /proc/mounts | cut -d" " -f3 > /fs\n' });
    expect(await r.read('fs')).toBe('tmpfs\n');
    expect(await r.exists('scratch')).toBe(false);
  });

  it('type=secret: from a file or an env var; never in a layer, the history or the cache key', async () => {
    const file = path.join(h.tmp, 'token');
    await fsp.writeFile(file, 'file-secret-1');
    process.env.TSBUILD_TEST_SECRET = 'env-secret';
    const df = 'FROM busybox\nRUN --mount=type=secret,id=tok --mount=type=secret,id=e,target=/etc/e,mode=0440,uid=1 cat /run/secrets/tok > /len && stat -c "%a %u" /etc/e >> /len && cat /etc/e >> /len; wc -c < /len > /count\n';
    const r = await h.buildIt({ Dockerfile: df }, { secrets: { tok: { src: file }, e: { env: 'TSBUILD_TEST_SECRET' } } });
    expect(await r.read('len')).toBe('file-secret-1440 1\nenv-secret');
    expect(await r.exists('run/secrets')).toBe(false);
    expect(await r.ls('run')).toEqual([]); // the base image's own /run, left empty
    expect(JSON.stringify(r.config)).not.toContain('file-secret');
    // A changed secret does not change the cache key: the step is cached.
    await fsp.writeFile(file, 'file-secret-2');
    const again = await h.buildIt({ Dockerfile: df }, { secrets: { tok: { src: file }, e: { env: 'TSBUILD_TEST_SECRET' } } });
    expect(again.imageId).toBe(r.imageId);
    const layers = await fsp.readdir(path.join(h.store.root, 'blobs', 'sha256'));
    expect(layers.length).toBeGreaterThan(0);
    // An optional secret that is missing is simply not mounted; a required one fails naming it.
    const opt = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=none test ! -e /run/secrets/none && echo ok > /o\n' });
    expect(await opt.read('o')).toBe('ok\n');
    await expect(h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=must,required=true true\n' })).rejects.toThrow(
      'Dockerfile:2:25: RUN --mount=type=secret,id=must: the secret is required but was not given',
    );
  });

  it('RUN --network=none has only lo; a bad value names its column', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN --network=none ls /sys/class/net > /nets\nRUN --network=host --network=default true\n' });
    expect(await r.read('nets')).toBe('lo\n');
    await expect(h.buildIt({ Dockerfile: 'FROM busybox\nRUN --network=wifi true\n' })).rejects.toThrow('Dockerfile:2:5: RUN --network=wifi: want none, host or default');
    await expect(h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=nfs,target=/x true\n' })).rejects.toThrow('Dockerfile:2:5: RUN --mount=type=nfs,target=/x: unknown mount type "nfs"');
  });
});
