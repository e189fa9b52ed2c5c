import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { LOCK_EX, flock, randomHex, spawnProcess, toolPath } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import { AddressAllocator, parseIPv4 } from './address-allocator.js';

/**
 * `network: 'private'`: the run gets its own network namespace (unshare --net) wired to the host
 * the way docker's default bridge network is:
 *
 *   container netns            host
 *   eth0 10.123.0.N/16 ──veth── tsb<id> ── bridge tsbuild0 10.123.0.1/16 ── NAT ── host's routes
 *   default via 10.123.0.1
 *
 * The subnet 10.123.0.0/16 was chosen because podman/CNI (10.88.0.0/16, present on this machine),
 * netavark (10.89.x) and docker (172.17.0.0/16) do not use it by default. Setup, once per boot and
 * idempotent: the bridge with the gateway address, net.ipv4.ip_forward=1, and an nftables table
 * `ip tsbuild` that masquerades traffic leaving the subnet and accepts its forwarding (an iptables
 * MASQUERADE rule when nft is missing). A DROP policy in another firewall's forward chain still
 * wins: nftables drops a packet any base chain drops.
 *
 * Per run: an address from the allocator (file + flock under /run/tsbuild/network), a veth pair
 * whose container end is created directly inside the run's namespace as eth0, and lo, eth0 and the
 * default route configured there with `nsenter --net` before the helper is sent its request. The
 * veth pair disappears with the namespace when the run's last process exits (a veth is destroyed
 * with either end); `release()` deletes it anyway and frees the address.
 */
export const BRIDGE = 'tsbuild0';
export const SUBNET = '10.123.0.0';
export const PREFIX = 16;
export const GATEWAY = '10.123.0.1';
export const NETWORK_STATE_DIR = '/run/tsbuild/network';

export interface PrivateNetwork {
  /** The container's address on the bridge. */
  address: string;
  gateway: string;
  /** The host end of the veth pair. */
  hostVeth: string;
  release(): Promise<void>;
}


/**
 * Wires the network namespace of `netns` (a host pid inside it, or the name of a namespace
 * created with `ip netns add`) to the bridge.
 */
export async function attachPrivateNetwork(netns: number | string, stateDir = NETWORK_STATE_DIR): Promise<PrivateNetwork> {
  const nsPath = typeof netns === 'number' ? `/proc/${netns}/ns/net` : `/run/netns/${netns}`;
  await ensureBridge(stateDir);
  const allocator = new AddressAllocator(stateDir, parseIPv4(SUBNET), PREFIX);
  const hostVeth = `tsb${randomHex(4)}`;
  const address = await allocator.allocate(hostVeth);
  const release = async (): Promise<void> => {
    await ip(['link', 'del', hostVeth]).catch(() => {}); // gone with the namespace already
    await allocator.release(address);
  };
  try {
    await ip(['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(netns)]);
    await ip(['link', 'set', hostVeth, 'master', BRIDGE, 'up']);
    const batch = ['link set lo up', `addr add ${address}/${PREFIX} dev eth0`, 'link set eth0 up', `route add default via ${GATEWAY}`].join('\n');
    await tool('nsenter', [`--net=${nsPath}`, '--', 'ip', '-batch', '-'], batch);
  } catch (e) {
    await release();
    throw e;
  }
  return { address, gateway: GATEWAY, hostVeth, release };
}

/** The bridge, forwarding and NAT, created once (under the state dir's lock) and then left in place. */
async function ensureBridge(stateDir: string): Promise<void> {
  if (existsSync(`/sys/class/net/${BRIDGE}`) && readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1' && existsSync(posix.join(stateDir, 'nat-done'))) return;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const fd = openSync(posix.join(stateDir, 'bridge.lock'), 'a');
  try {
    await flock(fd, LOCK_EX);
    if (!existsSync(`/sys/class/net/${BRIDGE}`)) {
      await ip(['link', 'add', BRIDGE, 'type', 'bridge']);
      await ip(['addr', 'add', `${GATEWAY}/${PREFIX}`, 'dev', BRIDGE]);
      await ip(['link', 'set', BRIDGE, 'up']);
    }
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
    await ensureNat();
    writeFileSync(posix.join(stateDir, 'nat-done'), '');
  } finally {
    closeSync(fd); // releases the lock
  }
}

async function ensureNat(): Promise<void> {
  const cidr = `${SUBNET}/${PREFIX}`;
  try {
    // One table of our own, replaced atomically: no rule of another tool is touched.
    const rules = [
      'table ip tsbuild {}',
      'delete table ip tsbuild',
      'table ip tsbuild {',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ip saddr ${cidr} ip daddr != ${cidr} masquerade`,
      '  }',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    ip saddr ${cidr} accept`,
      `    ip daddr ${cidr} ct state established,related accept`,
      '  }',
      '}',
    ].join('\n');
    await tool('nft', ['-f', '-'], rules);
    return;
  } catch (e) {
    if (((e as Error).cause as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw e;
  }
  const rule = ['-t', 'nat', 'POSTROUTING', '-s', cidr, '!', '-d', cidr, '-j', 'MASQUERADE'];
  try {
    await tool('iptables', ['-C', ...rule]);
  } catch {
    await tool('iptables', ['-A', ...rule]);
  }
}

/** A named network namespace (/run/netns/<name>) for a runtime that joins one by path. */
export async function createNamedNetns(name: string): Promise<{ path: string; remove(): Promise<void> }> {
  await ip(['netns', 'add', name]);
  return { path: `/run/netns/${name}`, remove: () => ip(['netns', 'del', name]).catch(() => {}) };
}

function ip(args: string[]): Promise<void> {
  return tool('ip', args);
}

/**
 * Runs one of iproute2's, nftables' or iptables' commands (by posix_spawn: spawnProcess, ~0.7 ms
 * a start against node's 5-10 ms fork, and a run with a private network starts four), `input`
 * on its stdin; rejects with the first line of its stderr.
 */
function tool(cmd: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnProcess(cmd, args, { stdio: [input !== undefined ? 'pipe' : 'ignore', 'ignore', 'pipe'], env: { PATH: toolPath() } });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 65536) stderr += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'ENOENT'
          ? new FailedPreconditionError(`${cmd} is not installed (needed for network 'private')`, { cause: e })
          : new FailedPreconditionError(`private network: ${cmd} ${args.join(' ')}: ${e.message}`, { cause: e }),
      );
    });
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      if (code === 0) resolve();
      else reject(new FailedPreconditionError(`private network: ${cmd} ${args.join(' ')}: ${(stderr.trim() || `exit ${code ?? signal}`).split('\n')[0]}`));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
