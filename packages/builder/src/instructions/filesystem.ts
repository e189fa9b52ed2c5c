import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { TsbuildError } from '@tsbuild/oci';
import { DIRECT_COPY_MAX_ENTRIES, type RunMount, parseRunMount } from '@tsbuild/container';
import { randomHex } from '@tsbuild/linux';
import type { Instruction } from '../dockerfile.js';
import { UnsetVariableError, expandWord } from '../expand.js';
import { checkNetwork } from './checks.js';
import type { Handler, StepScope } from './scope.js';

export const WORKDIR: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  const dir = expandWord(ins.args, scope.vars, scope.escape);
  if (dir === '') scope.fail('WORKDIR requires a path');
  // BuildKit keeps an absolute WORKDIR as written (`/tmp/` stays `/tmp/` in the config,
  // util/system NormalizeWorkdir) and joins a relative one onto the previous, cleaned.
  const wd = dir.startsWith('/') ? dir : path.posix.join(c.WorkingDir || '/', dir);
  c.WorkingDir = wd;
  const owner = await wc.owner(c.User ? expandWord(c.User, scope.vars, scope.escape) : '');
  await scope.layerStep(
    `/bin/sh -c #(nop) WORKDIR ${wd}`,
    () => wc.applyCopy([{ op: 'mkdir', path: path.posix.resolve(wd), uid: owner.uid, gid: owner.gid, mode: 0o755 }], signalOpt(scope)),
    true,
  );
};

/** COPY and ADD: the op was resolved (and hashed for the cache key) before the step; here it is applied. */
export const COPY: Handler = async (ins, scope, wc) => {
  const { copy, entries } = scope.prepared;
  await scope.layerStep(`/bin/sh -c #(nop) ${ins.keyword} ${ins.args}`, () =>
    wc.applyCopy([copy!], { direct: (entries ?? 0) <= DIRECT_COPY_MAX_ENTRIES, ...signalOpt(scope) }),
  );
};

export const ADD = COPY;

export const RUN: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  const network = runNetwork(ins, scope);
  const runMounts: RunMount[] = [];
  for (const m of ins.flags.get('mount') ?? []) {
    try {
      runMounts.push(parseRunMount(expandWord(m, scope.vars, scope.escape), c.WorkingDir || '/'));
    } catch (e) {
      if (e instanceof UnsetVariableError || !(e instanceof TsbuildError)) throw e;
      scope.failAt(`--mount=${m}`, `RUN ${e.message}`);
    }
  }
  const argv = ins.json ?? [...(c.Shell ?? ['/bin/sh', '-c']), shellScript(ins)];
  if (argv.length === 0) scope.fail('RUN requires at least one argument');
  const env = new Map(wc.state.env());
  // Build args reach RUN's environment but are not stored in the image's Env.
  for (const [k, v] of scope.args) if (!env.has(k)) env.set(k, v);
  for (const [k, v] of scope.proxy) if (!env.has(k)) env.set(k, v);
  const user = c.User ? expandWord(c.User, scope.vars, scope.escape) : '';
  const createdBy = ins.json ? ins.json.join(' ') : `/bin/sh -c ${ins.args}`;
  const tail = new OutputTail();
  await scope.layerStep(createdBy, async () => {
    const mountScratch = path.join(scope.scratch, 'mounts');
    const extra = await scope.runMounts(runMounts, mountScratch);
    // --tmpfs mountpoints as RUN --mount ones: a directory made for a mount is not the step's change.
    const missing = await wc.missingPaths([...runMounts.map((m) => m.target), ...(scope.runtime?.tmpfs ?? []).map((t) => t.destination)]);
    let res;
    const started = performance.now();
    try {
      res = await wc.runStep(argv, env, user, {
        workdir: c.WorkingDir || '/',
        runtime: { ...scope.runtime, ...(network !== undefined ? { network } : {}), ...stepResources(ins, scope) },
        ...(extra.mounts.length > 0 ? { mounts: extra.mounts } : {}),
        stdin: 'ignore',
        stdout: tail.wrap(scope.stdout),
        stderr: tail.wrap(scope.stderr),
        ...signalOpt(scope),
      });
    } finally {
      extra.release();
      await fsp.rm(mountScratch, { recursive: true, force: true });
      await wc.removeMountpoints(missing);
    }
    scope.reportUsage(performance.now() - started, res.usage);
    const failed = res.oomKilled || res.exitCode !== 0 || res.signal;
    const kept = failed ? ((await scope.keepFailed?.({ argv, env, user, workdir: c.WorkingDir || '/', ...(network !== undefined ? { network } : {}), mounts: runMounts })) ?? '') : '';
    if (res.oomKilled) {
      const own = ins.limits?.memory !== undefined;
      const limit = own ? ins.limits!.memory : scope.runtime?.resources?.memory;
      const from = own ? `, from # tsbuild:limits on line ${ins.limits!.line}` : ', from --memory';
      scope.fail(`RUN was killed: out of memory${limit !== undefined && limit > 0 ? ` (limit ${Math.round(limit / 1048576)} MiB${from})` : ''}${kept}`);
    }
    if (res.exitCode !== 0 || res.signal) {
      const how = res.signal ? `was killed by ${res.signal}` : `exited with status ${res.exitCode}`;
      const last = tail.lastLine();
      const hint = scope.logHint !== undefined ? `; full output: ${scope.logHint}` : '';
      scope.fail(`RUN ${truncate(ins.args)} ${how}${last ? ` (last output: ${JSON.stringify(truncate(last, 120))})` : ''}${hint}${kept}`);
    }
  });
};

/**
 * The step's cgroup limits: the build's (--memory, --cpus, --pids-limit), with those of its
 * `# tsbuild:limits` directive in their place. A step's own memory limit takes docker's default
 * swap with it (as much again), not the build's --memory-swap total, made for another limit.
 */
function stepResources(ins: Instruction, scope: StepScope): { resources?: NonNullable<StepScope['runtime']>['resources'] } {
  const l = ins.limits;
  if (l === undefined) return {};
  const resources = { ...scope.runtime?.resources };
  if (l.memory !== undefined) {
    resources.memory = l.memory;
    delete resources.memorySwap;
  }
  if (l.cpus !== undefined) resources.cpus = l.cpus;
  if (l.pidsLimit !== undefined) resources.pidsLimit = l.pidsLimit;
  return { resources };
}

function signalOpt(scope: StepScope): { signal?: AbortSignal } {
  return scope.signal ? { signal: scope.signal } : {};
}

/** RUN --network: none, host, or default (the build's own setting). */
function runNetwork(ins: Instruction, scope: StepScope): 'none' | 'host' | 'private' | undefined {
  const v = ins.flags.get('network')?.at(-1);
  if (v === undefined) return undefined;
  const n = expandWord(v, scope.vars, scope.escape);
  checkNetwork(ins, n, scope.file);
  return n === 'default' ? scope.runtime?.network : (n as 'none' | 'host');
}

/**
 * The script a shell-form RUN hands to the shell. With here-documents: `RUN <<EOF` alone runs the
 * body as the script (a `#!` body is written to a file and executed, as BuildKit does); otherwise
 * the shell gets the line and the bodies and does the here-document itself.
 */
export function shellScript(ins: Instruction): string {
  const docs = ins.heredocs ?? [];
  if (docs.length === 0) return ins.args;
  if (docs.length === 1 && /^<<-?(["']?)[A-Za-z_][A-Za-z0-9_]*\1$/.test(ins.args.trim())) {
    const body = docs[0]!.content;
    if (!body.startsWith('#!')) return body;
    const marker = `TSBUILD_HEREDOC_${randomHex(4)}`;
    return `f=$(mktemp) && cat > "$f" <<'${marker}' && chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc\n${body}${marker}\n`;
  }
  return `${ins.args}\n${docs.map((d) => `${d.content}${d.name}\n`).join('')}`;
}

/** Passes a RUN's output on and keeps its end, so that a failure can quote the last line. */
class OutputTail {
  private buf = '';

  wrap(out: Writable | undefined): Writable | 'inherit' {
    if (!out) return 'inherit';
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.buf = (this.buf + chunk.toString('utf8')).slice(-4096);
        out.write(chunk, cb);
      },
    });
  }

  lastLine(): string | undefined {
    return this.buf.split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1);
  }
}

export function truncate(s: string, n = 60): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}
