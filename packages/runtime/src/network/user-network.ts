import { accessSync, constants } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { spawnProcess, toolPath } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import type { PrivateNetwork } from './private-network.js';

/**
 * slirp4netns' fixed addresses (slirp4netns(1) with --configure): the container is 10.0.2.100 on
 * tap0, the gateway 10.0.2.2 and the DNS forwarder 10.0.2.3.
 */
export const USER_NETWORK = { address: '10.0.2.100', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

/**
 * `network: 'private'` where the bridge of private-network.ts cannot be made: in a user namespace
 * (rootless, or tsbuild in a container), veth pairs and NAT on the host's network namespace need
 * CAP_NET_ADMIN there. slirp4netns (podman's and buildah's rootless network) gives the run's
 * namespace a tap device whose packets it turns into ordinary sockets of ours, so the run reaches
 * whatever the host reaches, with no privilege. As podman does by default, the host's loopback is
 * not reachable from the run (--disable-host-loopback): 10.0.2.2 is a gateway, not 127.0.0.1.
 *
 * slirp4netns joins the namespace of `pid` (and `userns`, when the run has a user namespace of its
 * own). Its lifetime is ours: it exits when the exit descriptor closes (release(), or our death:
 * the kernel closes our end), and the namespace it serves goes with the run.
 */
export async function attachUserNetwork(pid: number, userns: boolean): Promise<PrivateNetwork> {
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FailedPreconditionError(
      code === 'ENOENT'
        ? "network 'private' in a user namespace needs /dev/net/tun for slirp4netns (give the container the device, or use --network host or none)"
        : `network 'private' in a user namespace needs /dev/net/tun open to every user for slirp4netns (${code}: make it mode 0666 as Debian's udev rules do, chmod 0666 /dev/net/tun, or use --network host or none)`,
    );
  }
  const args = ['--configure', '--mtu=65520', '--disable-host-loopback', '--ready-fd=3', '--exit-fd=4'];
  if (userns) args.push(`--userns-path=/proc/${pid}/ns/user`);
  args.push(String(pid), 'tap0');
  // posix_spawn (spawnProcess), as the helper chain: every rootless run with a network starts one.
  const child = spawnProcess('slirp4netns', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: { PATH: toolPath() } });
  const ready = child.stdio[3] as Socket;
  const exit = child.stdio[4] as Socket;
  let diagnostics = '';
  (child.stderr as Readable).setEncoding('utf8').on('data', (d: string) => {
    if (diagnostics.length < 8192) diagnostics += d;
  });
  const release = async (): Promise<void> => {
    exit.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('close', r));
      // Its exit descriptor closed, it leaves at once; the kill is for one that hangs.
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await gone;
      clearTimeout(timer);
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new FailedPreconditionError(e.code === 'ENOENT' ? "slirp4netns is not installed (needed for network 'private' in a user namespace: apt-get install slirp4netns)" : `cannot start slirp4netns: ${e.message}`)),
      );
      ready.once('data', () => resolve());
      child.once('close', (code: number | null) => reject(new FailedPreconditionError(`slirp4netns exited (${code}) before the network was up: ${diagnostics.trim().split('\n').at(-1) ?? ''}`)));
    });
  } catch (e) {
    await release();
    throw e;
  }
  ready.destroy();
  return { address: USER_NETWORK.address, gateway: USER_NETWORK.gateway, hostVeth: 'tap0', release };
}
