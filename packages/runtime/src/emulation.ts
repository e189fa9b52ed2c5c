import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { FailedPreconditionError, type Platform, formatPlatform, hostPlatform } from '@tsbuild/oci';

/** Where the kernel's binfmt_misc is mounted (binfmt-misc.rst). */
export const BINFMT_MISC = '/proc/sys/fs/binfmt_misc';

/** OCI architecture → the name qemu's binfmt entries (and binaries) use (Debian's qemu-user-static). */
const QEMU_NAMES: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  '386': 'i386',
  arm64: 'aarch64',
  arm: 'arm',
  ppc64le: 'ppc64le',
  ppc64: 'ppc64',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64le: 'mips64el',
  mips64: 'mips64',
  mipsle: 'mipsel',
  mips: 'mips',
  loong64: 'loongarch64',
};

/** Architectures the host's CPU runs without help: its own, and i386 on x86_64 (the kernel's IA32 emulation). */
export function runsNatively(p: Platform, host: Platform = hostPlatform()): boolean {
  if (p.os !== host.os) return false;
  if (p.architecture === host.architecture) return true;
  return host.architecture === 'amd64' && p.architecture === '386';
}

export interface Emulator {
  /** The binfmt_misc entry's name, e.g. qemu-aarch64. */
  entry: string;
  /** The interpreter the kernel runs binaries of this architecture with. */
  interpreter: string;
}

/**
 * How a RUN for `p` gets executed: undefined when natively, else the emulator registered for its
 * architecture. The entry must be enabled and carry the F flag ("fix binary": the kernel opens
 * the interpreter when it is registered, so it works inside the container's mount namespace
 * without the interpreter in the image; binfmt-misc.rst). Anything else is one line naming the
 * platform and what to install or run.
 */
export function emulatorFor(p: Platform, dir = BINFMT_MISC): Emulator | undefined {
  if (runsNatively(p)) return undefined;
  const what = `platform ${formatPlatform(p)}`;
  if (p.os !== 'linux') throw new FailedPreconditionError(`${what}: RUN needs a linux image (this machine runs ${formatPlatform(hostPlatform())})`);
  const name = QEMU_NAMES[p.architecture];
  if (name === undefined) throw new FailedPreconditionError(`${what}: no emulator is known for architecture ${p.architecture}`);
  const entry = `qemu-${name}`;
  let status: string;
  try {
    readFileSync(posix.join(dir, 'status'), 'utf8');
  } catch {
    throw new FailedPreconditionError(`${what}: RUN needs QEMU user emulation, but binfmt_misc is not mounted at ${dir} (mount -t binfmt_misc binfmt_misc ${dir}, then scripts/install-deps.sh registers qemu-user-static)`);
  }
  try {
    status = readFileSync(posix.join(dir, entry), 'utf8');
  } catch {
    throw new FailedPreconditionError(`${what}: no emulator for ${name} is registered with binfmt_misc (install Debian's qemu-user-static; scripts/install-deps.sh registers it with the F flag)`);
  }
  if (!/^enabled$/m.test(status)) throw new FailedPreconditionError(`${what}: the binfmt_misc entry ${entry} is disabled (echo 1 > ${posix.join(dir, entry)})`);
  const flags = /^flags:\s*(\S*)$/m.exec(status)?.[1] ?? '';
  const interpreter = /^interpreter\s+(\S+)$/m.exec(status)?.[1] ?? '';
  if (!flags.includes('F')) {
    throw new FailedPreconditionError(`${what}: the binfmt_misc entry ${entry} lacks the F flag, so its interpreter ${interpreter} would be looked up inside the image (register it again with flags F; scripts/install-deps.sh does)`);
  }
  return { entry, interpreter };
}
