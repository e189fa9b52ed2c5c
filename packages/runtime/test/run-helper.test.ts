import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeRunRequest, frameRunRequest } from '../src/run-request.js';
import { runHelperPath } from '../src/package-files.js';

/**
 * The run helper's request, as it reads it (run-helper.c read_request): fed a frame over a
 * socket pair as tsbuild's chain does, outside any namespace. Every case here fails before the
 * helper changes anything, so nothing needs root or a rootfs.
 */
function feed(frame: Buffer | undefined): Promise<{ status: number | null; reply: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(runHelperPath(), [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    const control = child.stdio[3] as Socket;
    let reply = '';
    control.setEncoding('utf8');
    control.on('data', (d: string) => (reply += d));
    control.on('error', () => {});
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, reply }));
    if (frame === undefined) control.end();
    else control.write(frame);
  });
}

const request = {
  kind: 'run' as const,
  target: '/nonexistent/rootfs',
  rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a:/b', 'upperdir=/u', 'workdir=/w'] }],
  args: ['sh', '-c', 'echo hi'],
  env: ['PATH=/bin'],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  hostname: 'h',
  network: 'host' as const,
};

const frame = (body: string): Buffer => {
  const b = Buffer.from(body);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(b.length);
  return Buffer.concat([head, b]);
};

describe('the run helper reads its request', () => {
  it('a request from another build (a field it does not know) fails in one line, exit 125', async () => {
    const r = await feed(frame('chain_pid=1\0target=/x\0colour=blue\0'));
    expect(r.status).toBe(125);
    expect(JSON.parse(r.reply)).toEqual({ error: { code: 'INTERNAL', message: 'bad request: unknown field colour (tsbuild and its helper are of different builds)' } });
  });

  it('a record without a value, a bad number, a list item before its first key, a missing field: each one line, exit 125', async () => {
    for (const [body, message] of [
      ['chain_pid=1\0target\0', 'bad request record: target'],
      ['chain_pid=x\0', 'bad request: chain_pid=x'],
      ['chain_pid=1\0root.option=ro\0', 'bad request: root.option before its item'],
      ['chain_pid=1\0target=/x\0', 'bad request: a field is missing'],
    ]) {
      const r = await feed(frame(body!));
      expect(r.status, body).toBe(125);
      expect(JSON.parse(r.reply).error.message, body).toBe(message);
    }
  });

  it('a length over 64 MiB is refused before anything is read into memory', async () => {
    const head = Buffer.alloc(4);
    head.writeUInt32LE(0xffffffff);
    const r = await feed(head);
    expect(r.status).toBe(125);
    expect(JSON.parse(r.reply).error.message).toBe('bad request: 4294967295 bytes');
  });

  it('tsbuild gone before its request (the control socket ends): exit 125 and nothing said', async () => {
    expect(await feed(undefined)).toEqual({ status: 125, reply: '' });
  });

  it("a whole request of encodeRunRequest's is read: the helper gets as far as checking that its parent is the chain tsbuild started", async () => {
    // Our pid is not its parent's: it gives up quietly, as when unshare died before forking it.
    const r = await feed(frameRunRequest(encodeRunRequest(request), 1));
    expect(r).toEqual({ status: 128 + 9, reply: '' });
  });
});

describe('the run helper enters its namespaces (--namespaces=TSBUILD_PID[,net])', () => {
  const start = (args: string[]): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn(runHelperPath(), args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (status, signal) => resolve({ status, signal, stderr }));
    });

  it('refuses a malformed spec in one line on its diagnostics, exit 1, before anything', async () => {
    for (const spec of ['x', '12,netx', '-3', '']) expect(await start([`--namespaces=${spec}`])).toEqual({ status: 1, signal: null, stderr: `run-helper: bad --namespaces=${spec}\n` });
  });

  it('gives up quietly when the pid it was given is not its parent (tsbuild died before it could know)', async () => {
    expect(await start(['--namespaces=1'])).toEqual({ status: 128 + 9, signal: null, stderr: '' });
  });

  it('forks PID 1 of a new PID namespace (as root: it unshares), which ends when its request never comes; the first process ends as it ended', async () => {
    // Our pid is the parent's: it unshares and forks; the child reads the request from fd 3, a
    // socket whose other end we close at once, and exits without an answer.
    const child = spawn(runHelperPath(), [`--namespaces=${process.pid}`], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr += d));
    (child.stdio[3] as Socket).end();
    const [status] = (await new Promise((resolve) => child.on('close', (...a) => resolve(a)))) as [number | null];
    // The child's exit (125: tsbuild gone before its request), passed on by the first process.
    expect({ status, stderr }).toEqual({ status: 125, stderr: '' });
  });
});

describe('encodeRunRequest', () => {
  it('writes key=value records ended by NUL, lists as repeated keys, the seccomp program as hex', () => {
    const body = encodeRunRequest({
      ...request,
      security: { capabilities: ['CAP_CHOWN', 'CAP_KILL'], seccomp: Buffer.from([1, 2, 255]).toString('base64'), noNewPrivileges: true, maskedPaths: ['/proc/kcore'], readonlyPaths: [], etcFiles: { hosts: 'h\n', resolvConf: 'r\n', hostname: 'n\n' } },
    }).toString();
    const records = body.split('\0');
    expect(records.at(-1)).toBe('');
    expect(records).toEqual(
      expect.arrayContaining(['target=/nonexistent/rootfs', 'root.type=overlay', 'root.option=lowerdir=/a:/b', 'arg=sh', 'arg=-c', 'arg=echo hi', 'security=1', 'caps=21', 'seccomp=0102ff', 'no_new_privs=1', 'masked=/proc/kcore', 'etc.hosts=h\n', 'etc.resolv=r\n', 'etc.hostname=n\n']),
    );
    expect(records.indexOf('arg=sh')).toBeLessThan(records.indexOf('arg=-c'));
  });

  it('refuses a NUL byte, which execve could not pass on either, in one line', () => {
    expect(() => encodeRunRequest({ ...request, env: ['A=b\0c'] })).toThrow('run: env holds a NUL byte: "A=b\\u0000c"');
  });

  it('leaves /etc/hosts to the helper unless one is given: its address is the network namespace\'s own', () => {
    const body = encodeRunRequest({ ...request, security: { capabilities: [], noNewPrivileges: false, maskedPaths: [], readonlyPaths: [] } }).toString();
    expect(body).not.toContain('etc.hosts=');
    expect(body).toContain('\0etc.hostname=h\n\0');
  });
});
