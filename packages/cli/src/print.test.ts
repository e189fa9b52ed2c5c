import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const printModule = new URL('../dist/print.js', import.meta.url).href;

/** Runs `body` in a node of its own (the built module) with stdout on a pipe; what came out and how it ended. */
function run(body: string, opts: { slowReader?: boolean } = {}): Promise<{ out: Buffer; code: number | null; err: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import { print } from '${printModule}';\n${body}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  if (opts.slowReader === true) {
    // Let the pipe fill up first, then read.
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), 300);
  }
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ out: Buffer.concat(chunks), code, err })));
}

describe('print', () => {
  it('writes to a pipe without making process.stdout (so without node:net), in the order asked', async () => {
    const r = await run(`print('a\\n'); print('b\\n'); const net = process.moduleLoadList.includes('NativeModule net'); process.stderr.write(String(net));`);
    expect(r).toMatchObject({ code: 0, err: 'false' });
    expect(r.out.toString()).toBe('a\nb\n');
  });

  it('keeps the order with writes through process.stdout in between', async () => {
    const r = await run(`print('1'); process.stdout.write('2'); print('3'); process.stdout.write('4'); print('5\\n');`);
    expect(r.code).toBe(0);
    expect(r.out.toString()).toBe('12345\n');
  });

  it('ends quietly with status 141 when the reader went away, as a command killed by SIGPIPE', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `import { print } from '${printModule}';\nprint('a\\n'); print('b\\n'); process.stderr.write('not reached');`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // our end of the pipe closed: the child's writes get EPIPE
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(err).toBe('');
    expect(code).toBe(141);
  });

  it('hands what a full non-blocking pipe did not take to process.stdout: every byte arrives, in order', async () => {
    // setBlocking(false) puts O_NONBLOCK on fd 1, as a parent sharing the pipe might: write(2)
    // then answers EAGAIN once the pipe's 64 KiB are full.
    const r = await run(
      `process.stdout._handle.setBlocking(false);
       const line = (i) => String(i).padStart(7, '0') + 'x'.repeat(56) + '\\n';
       let s = ''; for (let i = 0; i < 16384; i++) s += line(i);
       print(s); print('end\\n');`,
      { slowReader: true },
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const text = r.out.toString();
    expect(text.length).toBe(16384 * 64 + 4);
    const lines = text.split('\n');
    expect(lines[0]).toBe(`0000000${'x'.repeat(56)}`);
    expect(lines[16383]).toBe(`0016383${'x'.repeat(56)}`);
    expect(lines[16384]).toBe('end');
  });
});
