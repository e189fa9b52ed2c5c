import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';

/**
 * A step's complete output in a build record (issue 19, `tsbuild logs`): `logs/step-<N>.log`
 * holds what the step wrote to stdout and stderr, interleaved as the terminal shows it, not
 * clipped; `logs/steps` has one `N<TAB>instruction` line per logged step, for the headers.
 * The output is streamed to the file as it comes (a write stream's own buffer, with the
 * terminal's back-pressure), never kept whole in memory.
 */
export class StepLog {
  /** Set when the log file could not be written: the step goes on, only unlogged (a full disk must not fail a build). */
  private failed = false;

  private constructor(
    private readonly file: WriteStream,
    readonly path: string,
  ) {
    file.on('error', () => {
      this.failed = true;
      file.emit('drain');
    });
  }

  static async open(logsDir: string, step: number, instruction: string): Promise<StepLog> {
    await fsp.mkdir(logsDir, { recursive: true });
    await fsp.appendFile(path.join(logsDir, 'steps'), `${step}\t${instruction.replace(/\s+/g, ' ')}\n`);
    const p = path.join(logsDir, `step-${step}.log`);
    const file = createWriteStream(p, { flags: 'w', mode: 0o600, highWaterMark: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      file.once('open', () => resolve());
      file.once('error', reject);
    });
    return new StepLog(file, p);
  }

  /** `out` (the build's stdout or stderr, or this process's when the build has none) and the log file. */
  tee(out: Writable | undefined, fallback: NodeJS.WritableStream): Writable {
    const to = out ?? fallback;
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        // The terminal's write paces the step; the file's runs beside it (its own buffer of up to
        // 1 MiB), waited for only when that buffer is full: one disk round trip per chunk in
        // series cost 13% on a step printing 22 MB.
        if (!this.failed) this.file.write(chunk);
        to.write(chunk, (e) => {
          if (e) cb(e);
          // Asked now, not at the write: a drain in between would otherwise never come again.
          else if (!this.failed && this.file.writableNeedDrain) this.file.once('drain', () => cb());
          else cb();
        });
      },
    });
  }

  async close(): Promise<void> {
    if (this.failed) return;
    await new Promise<void>((resolve) => this.file.end(() => resolve()));
  }
}

/** The steps a record's logs hold, in order: number and instruction. */
export async function loggedSteps(logsDir: string): Promise<{ step: number; instruction: string; file: string }[]> {
  const text = await fsp.readFile(path.join(logsDir, 'steps'), 'utf8').catch(() => '');
  const out: { step: number; instruction: string; file: string }[] = [];
  for (const line of text.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const step = Number(line.slice(0, tab));
    if (Number.isInteger(step)) out.push({ step, instruction: line.slice(tab + 1), file: path.join(logsDir, `step-${step}.log`) });
  }
  return out;
}
