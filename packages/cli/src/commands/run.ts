import path from 'node:path';
import { isatty } from 'node:tty';
import { Args, Flags } from '../cli-kit.js';
import { InvalidArgumentError, NotFoundError, parsePlatform } from '@tsbuild/oci';
import { platformFlag } from '../platform-flag.js';
import { registryClient, registryFlags } from '../registry-flags.js';
import { WorkingContainer, runImage } from '@tsbuild/container';
import type { StartedRun } from '@tsbuild/runtime';
import { BaseCommand } from '../base-command.js';
import { parseVolumes, runtimeFlags, runtimeOptions, usernsFlags, volumeFlags } from '../run-flags.js';

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Run a command in a working container, or in a new container made from an image';
  static override description =
    'Uses the same runtime as RUN steps: its own mount, PID, UTS, IPC and cgroup namespaces, docker\'s default capabilities ' +
    'and seccomp profile, the USER, Env and WorkingDir of the config. The exit status is the command\'s.\n\n' +
    'When NAME is a working container (see `tsbuild containers`), the command runs in its filesystem as `buildah run` does ' +
    '(`tsbuild run $ctr -- CMD…`) and what it changes stays in the container for the next commit. Otherwise NAME is an ' +
    'image and the command runs in a new container made from it, as `podman run` does. A container name wins over an image of the same name.';
  static override passThroughAfterFirstArg = true;
  static override examples = ['<%= config.bin %> run --rm hello', '<%= config.bin %> run --rm -it busybox sh', '<%= config.bin %> run --rm --memory 64m busybox free'];
  static override args = {
    image: Args.string({ description: 'working container, or image name or ID', required: true }),
    command: Args.string({ description: 'command and arguments, passed as they are (default: the image\'s Entrypoint and Cmd)' }),
  };
  static override flags = {
    rm: Flags.boolean({ description: 'remove the container\'s snapshot when it exits' }),
    tty: Flags.boolean({ char: 't', description: 'allocate a pseudo-terminal for the container (with -i, stdin must be a terminal)' }),
    interactive: Flags.boolean({ char: 'i', description: 'keep stdin attached' }),
    env: Flags.string({ char: 'e', description: 'set an environment variable, KEY=VALUE or KEY (repeatable)', multiple: true }),
    workdir: Flags.string({ char: 'w', description: 'working directory inside the container' }),
    workingdir: Flags.string({ description: 'working directory inside the container (buildah\'s spelling of --workdir)' }),
    'add-history': Flags.boolean({ description: 'working container: record the command in the next commit\'s history' }),
    user: Flags.string({ char: 'u', description: 'user[:group] to run as' }),
    entrypoint: Flags.string({ description: 'override the image\'s Entrypoint' }),
    hostname: Flags.string({ description: 'container host name' }),
    init: Flags.boolean({ description: 'run an init as PID 1 that reaps zombies and forwards signals' }),
    platform: Flags.string({ description: 'image: os/arch[/variant] whose image to run from a manifest list, pulled when the store lacks it' }),
    ...registryFlags,
    ...runtimeFlags,
    ...usernsFlags,
    ...volumeFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Run, this.argv);
    const f = this.flags;
    // As docker: -it wants a terminal to read from; -t alone gives the command a terminal anyway.
    // isatty(0), not process.stdin.isTTY: creating process.stdin makes fd 0 non-blocking.
    const platform = f.platform !== undefined ? platformFlag(parsePlatform, f.platform) : undefined;
    if (f.tty && f.interactive && !isatty(0)) throw new InvalidArgumentError('the input device is not a TTY (-it needs a terminal on stdin; use -t alone to give the command one anyway)');
    let command = this.passThrough;
    const controller = new AbortController();
    const workdir = f.workingdir ?? f.workdir;
    const volumes = parseVolumes(f.volume ?? []);
    const runtime = { ...(await runtimeOptions(f)), ...(f.hostname ? { hostname: f.hostname } : {}), ...(f.init ? { init: true } : {}), ...(volumes.length > 0 ? { mounts: volumes } : {}) };
    const onSignal = () => controller.abort();
    process.once('SIGTERM', onSignal);
    // With -it the terminal is raw and ^C goes to the command through its pty; otherwise it is ours.
    if (!(f.tty && f.interactive)) process.once('SIGINT', onSignal);
    let closeEnv: (() => Promise<void>) | undefined;
    let started: StartedRun | undefined;
    try {
      // What a working container's run and an image's run take alike.
      const options = {
        ...(f.env ? { env: f.env } : {}),
        ...(workdir ? { workdir } : {}),
        ...(f.user ? { user: f.user } : {}),
        stdin: f.interactive ? ('inherit' as const) : ('ignore' as const),
        // The command writes to our stdout and stderr itself, as runc's does under buildah and podman.
        stdout: 'inherit' as const,
        stderr: 'inherit' as const,
        ...(f.tty ? { terminal: { sizeFrom: process.stdout } } : {}),
        runtime,
        signal: controller.signal,
      };
      // The run starts first (its helper boots meanwhile), then the store and the container are read.
      started = await WorkingContainer.startRun(path.resolve(this.flags.root), options);
      const common = { ...options, ...(started ? { started } : {}) };
      const env = await this.containerEnv(platform ? () => registryClient(f) : undefined);
      closeEnv = env.close;
      const wc = await WorkingContainer.find(env, args.image);
      if (wc) {
        if (command[0] === '--') command = command.slice(1);
        if (f.rm || f.entrypoint !== undefined || volumes.length > 0) throw new InvalidArgumentError(`${args.image} is a working container: --rm, --entrypoint and --volume apply to images only`);
        // A working container's platform was chosen by `from --platform`.
        if (platform) throw new InvalidArgumentError(`${args.image} is a working container: --platform applies to images only (see: tsbuild from --platform)`);
        const r = await wc.run(command, { ...common, ...(f.hostname ? { hostname: f.hostname } : {}), ...(f['add-history'] ? { addHistory: true } : {}) });
        if (r.oomKilled) process.stderr.write(`Error: the command was killed: out of memory\n`);
        process.exitCode = r.exitCode;
        return;
      }
      // With --platform the image may be a list's entry or pulled: runImage looks it up then.
      if (!platform) await env.store.resolve(args.image).catch((e: unknown) => {
        if (e instanceof NotFoundError) throw new NotFoundError(`no working container or image named ${args.image} (see: tsbuild containers, tsbuild images)`);
        throw e;
      });
      const r = await runImage({
        store: env.store,
        snapshotter: env.snapshotter,
        image: args.image,
        command,
        ...(f.entrypoint !== undefined ? { entrypoint: f.entrypoint } : {}),
        rm: f.rm,
        ...(platform ? { platform, ...(env.registry ? { registry: env.registry } : {}) } : {}),
        ...common,
      });
      if (r.oomKilled) process.stderr.write(`Error: the container was killed: out of memory${runtime.resources?.memory ? ` (limit ${Math.round(runtime.resources.memory / 1048576)} MiB)` : ''}\n`);
      process.exitCode = r.exitCode;
    } finally {
      await started?.release();
      await closeEnv?.();
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }
}
