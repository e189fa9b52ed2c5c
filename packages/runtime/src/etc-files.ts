import { readFileSync } from 'node:fs';
import { inUserNamespace } from '@tsbuild/linux';
import { USER_NETWORK } from './network/user-network.js';

/**
 * Contents for the run's /etc/hosts, /etc/resolv.conf and /etc/hostname; defaults are derived.
 * They reach a run without ever reaching a layer (docker's behaviour): the helper writes them to
 * the run's scratch dir and binds them over the rootfs's paths, so what the command writes to
 * them lands in the scratch copy, which run() deletes. A missing mountpoint comes from one more,
 * lowest, lowerdir of the rootfs overlay holding empty etc/ files: never copied up, since the
 * bind absorbs the writes (run-helper.c prepare_etc_layer and bind_etc_files).
 */
export interface EtcFiles {
  hosts?: string;
  resolvConf?: string;
  hostname?: string;
}

/**
 * The contents of each file: the request's, or docker's defaults for this network. /etc/hosts
 * without a given one is left to the helper (run-helper.c): its line for this host names the
 * address of the run's own network namespace, which only the helper is in.
 */
export function etcFileContents(given: EtcFiles | undefined, hostname: string, network: string): { hosts?: string; resolvConf: string; hostname: string } {
  return {
    ...(given?.hosts !== undefined ? { hosts: given.hosts } : {}),
    resolvConf: given?.resolvConf ?? defaultResolvConf(network),
    hostname: given?.hostname ?? `${hostname}\n`,
  };
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
