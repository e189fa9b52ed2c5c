import { describe, expect, it } from 'vitest';
import { ImageState } from '@tsbuild/container';
import type { CopyOp, RunResult } from '@tsbuild/runtime';
import { DockerfileError, type Instruction, parseDockerfile } from '../dockerfile.js';
import { HANDLERS } from './index.js';
import type { StepScope, StepTarget } from './scope.js';

/**
 * The instruction handlers against a recording fake of the working container: no root, no
 * snapshot, no process. Each test pins what a handler asks the container to do.
 */

type Call = { method: string; args: unknown[] };

class RecordingContainer implements StepTarget {
  readonly calls: Call[] = [];
  readonly state = ImageState.scratch();
  /** What runStep answers. */
  result: RunResult = { exitCode: 0, oomKilled: false } as RunResult;
  output = '';

  async applyCopy(ops: CopyOp[], opts?: { direct?: boolean }) {
    this.calls.push({ method: 'applyCopy', args: [ops, opts?.direct] });
  }
  async runStep(argv: string[], env: Map<string, string>, user: string, opts: { workdir: string; runtime?: unknown; mounts?: unknown[]; stdout?: unknown }) {
    this.calls.push({ method: 'runStep', args: [argv, Object.fromEntries(env), user, opts.workdir, opts.runtime, opts.mounts?.length ?? 0] });
    const out = opts.stdout;
    if (this.output && out && typeof out === 'object' && 'write' in out) await new Promise<void>((r) => (out as NodeJS.WritableStream).write(this.output, () => r()));
    return this.result;
  }
  async owner(spec: string) {
    this.calls.push({ method: 'owner', args: [spec] });
    return spec === 'app' ? { uid: 1000, gid: 1000 } : { uid: 0, gid: 0 };
  }
  async missingPaths(paths: string[]) {
    this.calls.push({ method: 'missingPaths', args: [paths] });
    return paths;
  }
  async removeMountpoints(paths: string[]) {
    this.calls.push({ method: 'removeMountpoints', args: [paths] });
  }
  methods(): string[] {
    return this.calls.map((c) => c.method);
  }
}

function instruction(line: string): Instruction {
  return parseDockerfile(`FROM scratch\n${line}\n`).stages[0]!.instructions[0]!;
}

function scope(ins: Instruction, o: Partial<StepScope> & { layers?: { createdBy: string; dropIfEmpty?: boolean }[] } = {}): StepScope {
  const layers = o.layers ?? [];
  return {
    file: 'Dockerfile',
    escape: '\\',
    step: 2,
    vars: new Map(),
    args: new Map(),
    proxy: new Map(),
    stage: {},
    prepared: {},
    scratch: '/nonexistent/step-2',
    timestamp: () => '2026-01-01T00:00:00.000Z',
    fail: (m) => {
      throw new DockerfileError('Dockerfile', ins.line, m);
    },
    failAt: (_n, m) => {
      throw new DockerfileError('Dockerfile', ins.line, m);
    },
    layerStep: async (createdBy, change, dropIfEmpty) => {
      layers.push({ createdBy, ...(dropIfEmpty ? { dropIfEmpty } : {}) });
      await change();
    },
    runMounts: async (mounts) => ({ mounts: mounts.map(() => ({ destination: '/x', type: 'tmpfs', options: [] })), release: () => undefined }),
    reportUsage: () => undefined,
    ...o,
  };
}

async function handle(line: string, wc = new RecordingContainer(), o: Parameters<typeof scope>[1] = {}) {
  const ins = instruction(line);
  await HANDLERS[ins.keyword]!(ins, scope(ins, o), wc);
  return wc;
}

describe('config instructions change only the config, with a #(nop) history entry', () => {
  it('ENV expands from the variables in scope and sets each pair', async () => {
    const wc = await handle('ENV A=1 B="two words" C=${X}-x', undefined, { vars: new Map([['X', 'ex']]) });
    expect(wc.state.container.Env).toEqual(['A=1', 'B=two words', 'C=ex-x']);
    expect(wc.state.config.history).toEqual([{ created: '2026-01-01T00:00:00.000Z', created_by: '/bin/sh -c #(nop) ENV A=1 B=two words C=ex-x', empty_layer: true }]);
    expect(wc.calls).toEqual([]);
  });

  it('CMD in shell form uses SHELL; ENTRYPOINT clears an inherited CMD but not one the stage set', async () => {
    const wc = new RecordingContainer();
    wc.state.container.Cmd = ['inherited'];
    await handle('SHELL ["/bin/bash","-c"]', wc);
    const stage = { cmdSet: false };
    await handle('ENTRYPOINT ["/e"]', wc, { stage });
    expect(wc.state.container.Cmd).toBeNull();
    await handle('CMD echo hi', wc, { stage });
    expect(wc.state.container.Cmd).toEqual(['/bin/bash', '-c', 'echo hi']);
    await handle('ENTRYPOINT ["/e2"]', wc, { stage });
    expect(wc.state.container.Cmd).toEqual(['/bin/bash', '-c', 'echo hi']);
  });

  it('LABEL, EXPOSE, VOLUME, STOPSIGNAL, USER, MAINTAINER, ONBUILD land where docker puts them', async () => {
    const wc = new RecordingContainer();
    for (const l of ['LABEL a=b "c d"=e', 'EXPOSE 80 53/UDP', 'VOLUME ["/data"]', 'STOPSIGNAL SIGINT', 'USER app:app', 'MAINTAINER me', 'ONBUILD RUN true']) await handle(l, wc);
    const c = wc.state.container;
    expect(c.Labels).toEqual({ a: 'b', 'c d': 'e' });
    expect(c.ExposedPorts).toEqual({ '80/tcp': {}, '53/udp': {} });
    expect(c.Volumes).toEqual({ '/data': {} });
    expect([c.StopSignal, c.User, wc.state.config.author, c.OnBuild]).toEqual(['SIGINT', 'app:app', 'me', ['RUN true']]);
    expect(wc.state.config.history).toHaveLength(7);
    expect(wc.calls).toEqual([]);
  });

  it('HEALTHCHECK converts durations to nanoseconds; NONE disables', async () => {
    const wc = await handle('HEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD ["/probe"]');
    expect(wc.state.container.Healthcheck).toEqual({ Test: ['CMD', '/probe'], Interval: 90e9, Timeout: 500e6, Retries: 2 });
    await handle('HEALTHCHECK NONE', wc);
    expect(wc.state.container.Healthcheck).toEqual({ Test: ['NONE'] });
  });
});

describe('filesystem instructions go through the container', () => {
  it('WORKDIR joins a relative path, keeps an absolute one as written, and makes it owned by USER (dropped when nothing changed)', async () => {
    const layers: { createdBy: string; dropIfEmpty?: boolean }[] = [];
    const wc = new RecordingContainer();
    wc.state.container.User = 'app';
    await handle('WORKDIR /srv/', wc, { layers });
    await handle('WORKDIR a/../b', wc, { layers });
    expect(wc.state.container.WorkingDir).toBe('/srv/b');
    expect(wc.calls).toEqual([
      { method: 'owner', args: ['app'] },
      { method: 'applyCopy', args: [[{ op: 'mkdir', path: '/srv', uid: 1000, gid: 1000, mode: 0o755 }], undefined] },
      { method: 'owner', args: ['app'] },
      { method: 'applyCopy', args: [[{ op: 'mkdir', path: '/srv/b', uid: 1000, gid: 1000, mode: 0o755 }], undefined] },
    ]);
    expect(layers).toEqual([
      { createdBy: '/bin/sh -c #(nop) WORKDIR /srv/', dropIfEmpty: true },
      { createdBy: '/bin/sh -c #(nop) WORKDIR /srv/b', dropIfEmpty: true },
    ]);
  });

  it('COPY applies the prepared op: directly for a few entries, through the helper for many', async () => {
    const op = { op: 'copy' as const, sources: ['/ctx/a'], dest: '/a', uid: 0, gid: 0 };
    const layers: { createdBy: string }[] = [];
    const wc = await handle('COPY a /a', undefined, { prepared: { copy: op, entries: 3 }, layers });
    await handle('COPY a /a', wc, { prepared: { copy: op, entries: 50_000 } });
    expect(wc.calls).toEqual([
      { method: 'applyCopy', args: [[op], true] },
      { method: 'applyCopy', args: [[op], false] },
    ]);
    expect(layers).toEqual([{ createdBy: '/bin/sh -c #(nop) COPY a /a' }]);
  });

  it('RUN: shell form through SHELL, build args and proxies in its env only, USER expanded, mount targets cleaned up', async () => {
    const wc = new RecordingContainer();
    wc.state.setEnv('PATH', '/bin');
    wc.state.container.User = '${U}';
    wc.state.container.WorkingDir = '/w';
    const layers: { createdBy: string }[] = [];
    await handle('RUN --mount=type=tmpfs,target=/t --network=none echo $A', wc, {
      vars: new Map([['U', 'app']]),
      args: new Map([['A', '1'], ['PATH', 'ignored']]),
      proxy: new Map([['http_proxy', 'http://p']]),
      runtime: { network: 'private' },
      layers,
    });
    expect(wc.calls).toEqual([
      { method: 'missingPaths', args: [['/t']] },
      { method: 'runStep', args: [['/bin/sh', '-c', 'echo $A'], { PATH: '/bin', A: '1', http_proxy: 'http://p' }, 'app', '/w', { network: 'none' }, 1] },
      { method: 'removeMountpoints', args: [['/t']] },
    ]);
    expect(layers).toEqual([{ createdBy: '/bin/sh -c echo $A' }]);
    expect(wc.state.container.Env).toEqual(['PATH=/bin']);
  });

  it('RUN --network=default takes the build\'s network; a failing command names its status and last output', async () => {
    const wc = new RecordingContainer();
    wc.result = { exitCode: 3, oomKilled: false } as RunResult;
    wc.output = 'first\nlast words\n';
    const { Writable } = await import('node:stream');
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    await expect(handle('RUN --network=default ["false"]', wc, { runtime: { network: 'host' }, stdout: sink })).rejects.toThrow('Dockerfile:2: RUN ["false"] exited with status 3 (last output: "last words")');
    expect(wc.calls[1]).toEqual({ method: 'runStep', args: [['false'], {}, '', '/', { network: 'host' }, 0] });
    expect(wc.methods()).toEqual(['missingPaths', 'runStep', 'removeMountpoints']);
  });

  it('RUN out of memory names the limit', async () => {
    const wc = new RecordingContainer();
    wc.result = { exitCode: 137, oomKilled: true } as RunResult;
    await expect(handle('RUN true', wc, { runtime: { resources: { memory: 64 << 20 } } })).rejects.toThrow('RUN was killed: out of memory (limit 64 MiB, from --memory)');
  });
});

describe('RUN: per-step limits (# tsbuild:limits) and usage', () => {
  const build = { resources: { memory: 1024 ** 3, memorySwap: 2 * 1024 ** 3, cpus: 2, pidsLimit: 500 }, network: 'host' as const };

  it('the directive replaces the build-wide limits for its step only; the next RUN keeps the defaults', async () => {
    const df = parseDockerfile('FROM scratch\n# tsbuild:limits memory=64m cpus=0.5 pids=50\nRUN make\nRUN make install\n');
    const [limited, plain] = df.stages[0]!.instructions as [Instruction, Instruction];
    const wc = new RecordingContainer();
    await HANDLERS.RUN!(limited, scope(limited, { runtime: build }), wc);
    await HANDLERS.RUN!(plain, scope(plain, { runtime: build }), wc);
    const runtimes = wc.calls.filter((c) => c.method === 'runStep').map((c) => c.args[4]);
    // The step's own memory limit takes docker's default swap, not the build's --memory-swap.
    expect(runtimes[0]).toEqual({ network: 'host', resources: { memory: 64 * 1024 ** 2, cpus: 0.5, pidsLimit: 50 } });
    expect(runtimes[1]).toEqual(build);
  });

  it('an OOM kill names the step limit and the directive line; one under --memory names the flag', async () => {
    const df = parseDockerfile('FROM scratch\nRUN true\n# tsbuild:limits memory=64m\nRUN big\n');
    const ins = df.stages[0]!.instructions[1]!;
    const wc = new RecordingContainer();
    wc.result = { exitCode: 137, signal: 'SIGKILL', oomKilled: true };
    await expect(HANDLERS.RUN!(ins, scope(ins, { runtime: build }), wc)).rejects.toThrow('Dockerfile:4: RUN was killed: out of memory (limit 64 MiB, from # tsbuild:limits on line 3)');
    const other = df.stages[0]!.instructions[0]!;
    await expect(HANDLERS.RUN!(other, scope(other, { runtime: build }), wc)).rejects.toThrow('Dockerfile:2: RUN was killed: out of memory (limit 1024 MiB, from --memory)');
  });

  it('reports the wall time and the cgroup figures after the step, also when it fails', async () => {
    const wc = new RecordingContainer();
    wc.result = { exitCode: 1, oomKilled: false, usage: { cpuMs: 4100, peakMemoryBytes: 812e6 } };
    const seen: unknown[] = [];
    await expect(handle('RUN false', wc, { reportUsage: (wallMs, usage) => seen.push({ wall: wallMs >= 0, usage }) })).rejects.toThrow('exited with status 1');
    expect(seen).toEqual([{ wall: true, usage: { cpuMs: 4100, peakMemoryBytes: 812e6 } }]);
  });
});
