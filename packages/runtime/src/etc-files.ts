import { fstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { posix } from 'node:path';
import { MS, fdLink, inUserNamespace, mount, withFd } from '@tsbuild/linux';
import { mountCall, type Mount } from './mount-spec.js';
import { mountpointFd } from './mountpoint.js';
import { resolveInRoot } from './root-path.js';
import { USER_NETWORK } from './network/user-network.js';

/** Contents for the run's /etc/hosts, /etc/resolv.conf and /etc/hostname; defaults are derived. */
export interface EtcFiles {
  hosts?: string;
  resolvConf?: string;
  hostname?: string;
}

const FILES = [
  { key: 'hosts', path: '/etc/hosts' },
  { key: 'resolvConf', path: '/etc/resolv.conf' },
  { key: 'hostname', path: '/etc/hostname' },
] as const;

/**
 * How the three files reach a run without ever reaching a layer (docker's behaviour):
 *  - their contents are written to the run's scratch dir and bind-mounted over the rootfs paths,
 *    so whatever the command writes to them lands in the scratch copy, which run() deletes;
 *  - a bind mount needs an existing mountpoint. Creating a missing one through the overlay would
 *    put it in the upperdir and so in the next layer. Instead the helper adds one more, lowest,
 *    lowerdir to the rootfs overlay: a directory holding empty etc/hosts, etc/resolv.conf and
 *    etc/hostname (and etc/ itself). A file the image has hides ours; one it lacks shows through
 *    from that layer, never copied up because nothing writes to it (the bind mount absorbs the
 *    writes, and unlink/rename of a mountpoint fail with EBUSY). Nothing is left to clean up.
 *  - a rootfs that is not an overlay (a bind of a directory) gets missing mountpoints created in
 *    it, the one case where an empty file can stay behind; a read-only one skips missing files.
 */
export function prepareEtcLayer(rootfs: Mount[], scratch: string): Mount[] {
  const first = rootfs[0];
  if (first?.type !== 'overlay' || !first.options.some((o) => o.startsWith('lowerdir='))) return rootfs;
  const layer = posix.join(scratch, 'etc-layer');
  mkdirSync(posix.join(layer, 'etc'), { recursive: true, mode: 0o755 });
  for (const f of FILES) writeFileSync(posix.join(layer, f.path), '', { mode: 0o644 });
  const options = first.options.map((o) => (o.startsWith('lowerdir=') ? `${o}:${layer}` : o));
  // mount(2) copies one page of options; mount-spec shortens long ones by a common directory,
  // which our path may not share. Without room the files get plain mountpoints instead.
  if (Buffer.byteLength(mountCall({ ...first, options }).data) > 4095) return rootfs;
  return [{ ...first, options }, ...rootfs.slice(1)];
}

/** The contents of each file: the request's, or docker's defaults for this network. */
export function etcFileContents(given: EtcFiles | undefined, hostname: string, network: string): Record<'hosts' | 'resolvConf' | 'hostname', string> {
  return {
    hosts: given?.hosts ?? defaultHosts(hostname),
    resolvConf: given?.resolvConf ?? defaultResolvConf(network),
    hostname: given?.hostname ?? `${hostname}\n`,
  };
}

function defaultHosts(hostname: string): string {
  // The address other hosts see for this one: the first non-loopback IPv4 of the network namespace
  // we are in (the host's, or a private network's eth0); 127.0.1.1 (Debian's convention) without one.
  const ip =
    Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.1.1';
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${ip}\t${hostname}\n`;
}

/**
 * The host's resolv.conf; in a network namespace of its own a nameserver on the host's loopback
 * (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1) is unreachable, so those lines go, and
 * a private network left without any gets public resolvers, as docker does.
 */
function defaultResolvConf(network: string): string {
  let text = '';
  try {
    text = readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    // no resolv.conf on the host: an empty one
  }
  if (network === 'host') return text;
  // slirp4netns (user-network.ts) forwards DNS at its own address, to the host's resolvers.
  if (network === 'private' && inUserNamespace()) return `nameserver ${USER_NETWORK.dns}\n`;
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\s*$|::1$)/.test(l));
  if (network === 'private' && !lines.some((l) => /^\s*nameserver\s/.test(l))) lines.unshift('nameserver 8.8.8.8', 'nameserver 8.8.4.4');
  return `${lines.join('\n').trimEnd()}\n`;
}

/**
 * Writes the contents into `scratch` and binds them over the rootfs paths (before pivot_root,
 * `root` being the rootfs's host path), onto mountpoints opened by descriptor (mountpointFd). A
 * path that is a symlink is followed inside the rootfs.
 */
export function bindEtcFiles(root: string, scratch: string, contents: Record<'hosts' | 'resolvConf' | 'hostname', string>): void {
  const dir = posix.join(scratch, 'etc-files');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const f of FILES) {
    const source = posix.join(dir, posix.basename(f.path));
    writeFileSync(source, contents[f.key], { mode: 0o644 });
    const target = resolveInRoot(root, f.path);
    let at: number;
    try {
      at = mountpointFd(root, target, true);
    } catch {
      continue; // a read-only rootfs: the command sees the image's (missing) file
    }
    // A directory in its place: leave the image alone.
    withFd(at, (fd) => {
      if (fstatSync(fd).isFile()) mount(source, fdLink(fd), null, MS.BIND);
    });
  }
}
