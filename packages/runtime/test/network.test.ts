import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { BRIDGE, GATEWAY, type RunSpec } from '../src/index.js';
import { useBusyboxFixture, shIn } from './busybox-rootfs.js';
import { tsbuildCgroups } from './cgroup-leftovers.js';

/**
 * SAFETY: these tests only talk to addresses of this machine: the bridge's address, where the
 * test's own server listens.
 */
const fx = useBusyboxFixture();

const sh = (script: string, extra: Partial<RunSpec> = {}) => shIn(fx, script, extra);

function hostVeths(): string[] {
  return readdirSync('/sys/class/net').filter((n) => /^tsb[0-9a-f]{8}$/.test(n));
}

function ownedAddresses(): string[] {
  const f = '/run/tsbuild/network/addresses.json';
  if (!existsSync(f)) return [];
  const table = JSON.parse(readFileSync(f, 'utf8')) as Record<string, { pid: number }>;
  return Object.entries(table)
    .filter(([, o]) => o.pid === process.pid)
    .map(([a]) => a);
}

describe("network 'private'", () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('has lo and eth0 on the bridge, a default route via it, and reaches a server on the bridge address', async () => {
    const first = await sh('ip -o -4 addr show eth0; ip route; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; ls /sys/class/net', { network: 'private' });
    expect(first.err).toBe('');
    const [addr, ...rest] = first.out.trim().split('\n');
    expect(addr).toMatch(/eth0\s+inet 10\.123\.\d+\.\d+\/16/);
    expect(rest[0]).toBe(`default via ${GATEWAY} dev eth0 `);
    expect(first.out).toMatch(/\neth0\nlo\n$/);
    expect(existsSync(`/sys/class/net/${BRIDGE}`)).toBe(true);

    server = createServer((req, res) => res.end(`hello from the host to ${req.socket.remoteAddress}\n`));
    await new Promise<void>((r) => server?.listen(0, GATEWAY, r));
    const port = (server.address() as AddressInfo).port;
    const r = await sh(`wget -q -O - http://${GATEWAY}:${port}/`, { network: 'private' });
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^hello from the host to (::ffff:)?10\.123\.\d+\.\d+\n$/);
    expect(r.exitCode).toBe(0);
  });

  it('two runs at once get different addresses', async () => {
    const [a, b] = await Promise.all([sh('sleep 0.3; ip -o -4 addr show eth0', { network: 'private' }), sh('sleep 0.3; ip -o -4 addr show eth0', { network: 'private' })]);
    const ip = (s: string): string => /inet (\S+)\//.exec(s)?.[1] ?? 'none';
    expect(ip(a.out)).not.toBe('none');
    expect(ip(a.out)).not.toBe(ip(b.out));
  });

  it('leaves no veth, namespace, address or cgroup behind, also after a failed command', async () => {
    const failed = await sh('exit 3', { network: 'private' });
    expect(failed.exitCode).toBe(3);
    expect(hostVeths()).toEqual([]);
    expect(ownedAddresses()).toEqual([]);
    expect(tsbuildCgroups()).toEqual([]);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain('tsbuild-');
  });

  it("'none' sees only lo", async () => {
    const r = await sh('ls /sys/class/net', { network: 'none' });
    expect(r.out).toBe('lo\n');
  });
});
