import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type SpawnedProcess, findOnPath, spawnProcess } from './spawn.js';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
const dir = mkdtempSync(path.join(tmpdir(), 'spawn-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Everything the process wrote to its piped stdout, its events in order, and how it ended. */
function collect(child: SpawnedProcess): Promise<{ out: string; events: string[]; code: number | null; signal: string | null }> {
  const events: string[] = [];
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  for (const e of ['spawn', 'exit', 'error'] as const) child.on(e, () => events.push(e));
  return new Promise((resolve) => child.on('close', (code: number | null, signal: string | null) => resolve({ out, events: [...events, 'close'], code, signal })));
}

describe('spawnProcess', () => {
  it('reports output, exit status and events in the order node does', async () => {
    const child = spawnProcess('sh', ['-c', 'echo out; exit 3'], { stdio: ['ignore', 'pipe', 'inherit'], env });
    expect(child.pid).toBeGreaterThan(0);
    const r = await collect(child);
    expect(r).toEqual({ out: 'out\n', events: ['spawn', 'exit', 'close'], code: 3, signal: null });
    expect(child.exitCode).toBe(3);
    expect(child.kill()).toBe(false); // reaped: its pid is no longer ours to signal
  });

  it('reports a death by signal by its name', async () => {
    const child = spawnProcess('sh', ['-c', 'kill -TERM $$'], { stdio: ['ignore', 'ignore', 'ignore'], env });
    const r = await collect(child);
    expect([r.code, r.signal]).toEqual([null, 'SIGTERM']);
  });

  it('kills a running process', async () => {
    const child = spawnProcess('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore'], env });
    expect(child.kill('SIGKILL')).toBe(true);
    expect((await collect(child)).signal).toBe('SIGKILL');
  });

  it('answers a missing command with an error event, then close, as node does', async () => {
    const child = spawnProcess('no-such-command-here', [], { stdio: ['ignore', 'pipe', 'ignore'], env });
    let error: NodeJS.ErrnoException | undefined;
    child.on('error', (e) => (error = e));
    const r = await collect(child);
    expect(child.pid).toBeUndefined();
    expect(r.events).toEqual(['error', 'close']);
    expect(error?.code).toBe('ENOENT');
  });

  it('passes over PATH entries it cannot search, as execvp does', async () => {
    // A file where a directory should be (ENOTDIR), and one of root's own directories for another
    // user (EACCES; root itself is never refused, so the file stands in for it here).
    const child = spawnProcess('true', [], { stdio: ['ignore', 'ignore', 'ignore'], env: { PATH: `/etc/passwd:${dir}/missing:${env.PATH}` } });
    expect((await collect(child)).code).toBe(0);
  });

  it('gives each slot the descriptor asked for, even when slots and sources cross', async () => {
    // Our fds a and b go to the child's 4 and 3: whatever their numbers, setting one slot must not
    // clobber the source of the other.
    const a = openSync(path.join(dir, 'a'), 'w');
    const b = openSync(path.join(dir, 'b'), 'w');
    try {
      const child = spawnProcess('sh', ['-c', 'echo three >&3; echo four >&4; ls /proc/self/fd | sort -n | tr "\\n" " "'], { stdio: ['ignore', 'pipe', 'ignore', b, a], env });
      const r = await collect(child);
      expect(r.code).toBe(0);
      // Above the slots, no more than a child of node's spawn() gets (what is not close-on-exec
      // here, as the test runner's channel, and the fd ls opens to read the directory).
      const nodes = spawnSync('sh', ['-c', 'ls /proc/self/fd | sort -n | tr "\\n" " "'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore', b, a] }).stdout;
      const above = (list: string) => list.trim().split(' ').map(Number).filter((n) => n > 4);
      expect(above(r.out)).toEqual(above(nodes));
    } finally {
      closeSync(a);
      closeSync(b);
    }
    expect(readFileSync(path.join(dir, 'b'), 'utf8')).toBe('three\n');
    expect(readFileSync(path.join(dir, 'a'), 'utf8')).toBe('four\n');
  });

  it('starts the child with default signal dispositions, an empty mask and only the environment given', async () => {
    // node ignores SIGPIPE, and an ignored signal would survive execve.
    const child = spawnProcess('sh', ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status; echo "FOO=${FOO-unset} HOME=${HOME-unset}"'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...env, FOO: 'bar' } });
    const r = await collect(child);
    expect(r.out).toMatch(/^SigBlk:\s+0+$/m);
    expect(r.out).toMatch(/^SigIgn:\s+0+$/m);
    expect(r.out).toContain('FOO=bar HOME=unset');
  });

  it('puts a detached child in a session of its own', async () => {
    const child = spawnProcess('sh', ['-c', 'cut -d" " -f6 /proc/self/stat'], { stdio: ['ignore', 'pipe', 'inherit'], env, detached: true });
    const r = await collect(child);
    expect(Number(r.out.trim())).toBe(child.pid);
  });

  it('writes to a piped stdin, and the child sees its end', async () => {
    const child = spawnProcess('sh', ['-c', 'cat; echo done'], { stdio: ['pipe', 'pipe', 'inherit'], env });
    child.stdin!.end('from us\n');
    expect((await collect(child)).out).toBe('from us\ndone\n');
  });

  it("leaves node's own children to node, and node leaves ours to us", async () => {
    const theirs = new Promise<number | null>((resolve) => spawn('sh', ['-c', 'sleep 0.2; exit 5']).on('exit', resolve));
    const ours = collect(spawnProcess('sh', ['-c', 'sleep 0.1; exit 6'], { stdio: ['ignore', 'ignore', 'ignore'], env }));
    const quick = collect(spawnProcess('sh', ['-c', 'exit 7'], { stdio: ['ignore', 'ignore', 'ignore'], env }));
    expect(await theirs).toBe(5);
    expect((await ours).code).toBe(6);
    expect((await quick).code).toBe(7);
  });

  it('holds the event loop open while the child runs, unless unref()ed', () => {
    const script = (unref: boolean) =>
      `import(${JSON.stringify(new URL('../dist/spawn.js', import.meta.url).href)}).then(({ spawnProcess }) => { const c = spawnProcess('sleep', ['1'], { stdio: ['ignore', 'ignore', 'ignore'], env: { PATH: process.env.PATH } }); ${unref ? 'c.unref();' : ''} const t = Date.now(); process.on('exit', () => console.log(Date.now() - t)); })`;
    const waited = Number(spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8' }).stdout.trim());
    const left = Number(spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8' }).stdout.trim());
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(left).toBeLessThan(500);
  });
});

describe('findOnPath', () => {
  it('finds executable regular files only, in PATH order, as execvp does', () => {
    const bin = path.join(dir, 'bin');
    mkdirSync(path.join(bin, 'a-dir'), { recursive: true });
    writeFileSync(path.join(bin, 'not-executable'), '#!/bin/sh\n');
    writeFileSync(path.join(bin, 'sh'), '#!/bin/sh\n');
    chmodSync(path.join(bin, 'sh'), 0o755);
    expect(findOnPath('sh', `/etc/passwd:${bin}:/bin`)).toBe(path.join(bin, 'sh'));
    expect(findOnPath('not-executable', bin)).toBeUndefined();
    expect(findOnPath('a-dir', bin)).toBeUndefined();
    expect(findOnPath('no-such-command-here', `${bin}:/bin`)).toBeUndefined();
  });
});
