import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { LOCK_EX, LOCK_UN, flock, processAlive } from '@tsbuild/linux';
import { UnavailableError } from '@tsbuild/oci';

/**
 * IPv4 addresses of the private network handed out to runs, recorded in `<stateDir>/addresses.json`
 * ({ "10.123.0.2": { "pid": 1234, "id": "tsb1a2b3c4d" } }) and changed only under flock(2) on
 * `<stateDir>/addresses.lock`, so concurrent tsbuild processes never hand out the same one.
 * An entry whose pid (the tsbuild process that took it) is dead is free again: a killed tsbuild
 * cannot release its addresses, and its containers died with it.
 */
export class AddressAllocator {
  constructor(
    readonly stateDir: string,
    /** Network address as a 32-bit number, and prefix length. */
    private readonly network: number,
    private readonly prefix: number,
  ) {}

  /** The lowest free host address, skipping the network, the gateway (.1) and the broadcast address. */
  async allocate(id: string): Promise<string> {
    return this.locked((table) => {
      const size = 2 ** (32 - this.prefix);
      for (let i = 2; i < size - 1; i++) {
        const addr = formatIPv4(this.network + i);
        const owner = table[addr];
        if (owner !== undefined && processAlive(owner.pid)) continue;
        table[addr] = { pid: process.pid, id };
        return addr;
      }
      throw new UnavailableError(`no free address left in ${formatIPv4(this.network)}/${this.prefix} (${posix.join(this.stateDir, 'addresses.json')})`);
    });
  }

  async release(addr: string): Promise<void> {
    await this.locked((table) => {
      if (table[addr]?.pid === process.pid) delete table[addr];
    });
  }

  private async locked<T>(fn: (table: Record<string, { pid: number; id: string }>) => T): Promise<T> {
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    const fd = openSync(posix.join(this.stateDir, 'addresses.lock'), 'a');
    try {
      await flock(fd, LOCK_EX);
      const file = posix.join(this.stateDir, 'addresses.json');
      let table: Record<string, { pid: number; id: string }> = {};
      try {
        table = JSON.parse(readFileSync(file, 'utf8')) as typeof table;
      } catch {
        // first use, or a file cut short by a crash: every live owner re-registers on next use
      }
      for (const [addr, owner] of Object.entries(table)) if (!processAlive(owner.pid)) delete table[addr];
      const result = fn(table);
      writeFileSync(`${file}.tmp`, JSON.stringify(table));
      renameSync(`${file}.tmp`, file);
      await flock(fd, LOCK_UN);
      return result;
    } finally {
      closeSync(fd);
    }
  }
}

export function parseIPv4(s: string): number {
  const parts = s.split('.').map(Number);
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

