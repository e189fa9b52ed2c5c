import path from 'node:path';
import { Args, Flags } from '../cli-kit.js';
import { digestHex, parsePlatform } from '@tsbuild/oci';
import { MAX_SOURCE_DATE_EPOCH, importRootfs } from '@tsbuild/builder';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Import extends BaseCommand<typeof Import> {
  static override summary = 'Create a one-layer image from a root filesystem (a directory, or a tar: plain, gzip or zstd)';
  static override examples = ['<%= config.bin %> import ./rootfs busybox', '<%= config.bin %> import rootfs.tar.gz base:1', '<%= config.bin %> import --platform linux/arm64 ./rootfs-arm64 busybox-arm64'];
  static override args = {
    source: Args.string({ description: 'directory or tar file', required: true }),
    name: Args.string({ description: 'image name', required: true }),
  };
  static override flags = {
    env: Flags.string({ description: 'Env entry KEY=VALUE for the image config (repeatable)', multiple: true }),
    cmd: Flags.string({ description: 'default command, as a JSON array or a shell string' }),
    platform: Flags.string({ description: 'os/arch[/variant] the image config records (default: this machine\'s); RUN of another architecture uses QEMU user emulation' }),
    // A date must have an ISO form for `created`: JavaScript's span, ±8.64e12 s (as build --timestamp).
    timestamp: Flags.integer({ description: 'seconds since the epoch for created times and file mtimes', min: -MAX_SOURCE_DATE_EPOCH, max: MAX_SOURCE_DATE_EPOCH }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Import);
    const f = this.flags;
    // Parsed before anything is read or written: a bad platform leaves nothing in the store.
    const platform = f.platform !== undefined ? parsePlatform(f.platform) : undefined;
    let cmd: string[] | undefined;
    if (f.cmd !== undefined) cmd = f.cmd.trim().startsWith('[') ? (JSON.parse(f.cmd) as string[]) : ['/bin/sh', '-c', f.cmd];
    const r = await importRootfs(await this.store(), path.resolve(args.source), args.name, {
      ...(f.env ? { env: f.env } : {}),
      ...(cmd ? { cmd } : {}),
      ...(f.timestamp !== undefined ? { sourceDateEpoch: f.timestamp } : {}),
      ...(platform ? { platform } : {}),
    });
    print(`${digestHex(r.imageId)}\n`);
  }
}
