import { existsSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, Flags } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';
import { goArch } from '../version-info.js';
import { findOnPath, inUserNamespace, readIdMap, toolPath } from '@tsbuild/linux';
import { apparmorEnabled, helperPath, runHelperPath, selinuxEnabled } from '@tsbuild/runtime';
import { print } from '../print.js';

/** A /proc/self/{u,g}id_map as buildah info prints it: container_id, host_id, size. */
function idMap(file: string): { container_id: number; host_id: number; size: number }[] {
  return readIdMap(file).map((r) => ({ container_id: r.inside, host_id: r.outside, size: r.count }));
}

/**
 * The architectures the built-in runtime's seccomp compiler covers (packages/runtime/src/seccomp/
 * bpf.ts, compileFilter: the x86 family in one filter, or aarch64). Written here because the
 * runtime's public API does not name them and importing it would load the libc addon.
 */
const SECCOMP_ARCHITECTURES = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64'];

/**
 * How the host mounts cgroups, by the rule the runtime's cgroupLayout applies: cgroup.controllers
 * at the root is the unified hierarchy (v2); otherwise v1, "hybrid" when a unified hierarchy is
 * mounted beside the v1 controllers at /sys/fs/cgroup/unified (systemd's hybrid mode).
 */
export function cgroupVersion(root = '/sys/fs/cgroup'): 'v1' | 'hybrid' | 'v2' {
  if (existsSync(path.join(root, 'cgroup.controllers'))) return 'v2';
  return existsSync(path.join(root, 'unified', 'cgroup.procs')) ? 'hybrid' : 'v1';
}

/**
 * Which of the cgroup controls of --blkio-weight, --device-*-bps/iops and the devices rules this
 * host has, by the files the runtime writes (packages/runtime/src/cgroups/run-cgroup.ts): v1 the
 * blkio and devices hierarchies; v2 the io controller (cgroup.controllers) and, for devices, an
 * eBPF program on the cgroup (no controller file: assumed present, the kernel says at attach).
 */
export function cgroupControls(root = '/sys/fs/cgroup'): { blkio: boolean; blkioWeight: boolean; devices: boolean } {
  if (cgroupVersion(root) === 'v2') {
    const controllers = readFileSync(path.join(root, 'cgroup.controllers'), 'utf8').split(/\s+/);
    return { blkio: controllers.includes('io'), blkioWeight: controllers.includes('io'), devices: true };
  }
  const blkio = path.join(root, 'blkio');
  return {
    blkio: existsSync(path.join(blkio, 'blkio.throttle.write_bps_device')),
    blkioWeight: existsSync(path.join(blkio, 'blkio.weight')) || existsSync(path.join(blkio, 'blkio.bfq.weight')),
    devices: existsSync(path.join(root, 'devices', 'devices.allow')),
  };
}

/**
 * `{{.host.arch}}`, `{{ .store }}` and `{{json .runtime}}` looked up in `data`, as a Go template
 * over podman's and buildah's info structure: a string or number prints as it is, anything else as
 * JSON. A field that does not exist is a usage error, not an empty string.
 */
export function renderTemplate(template: string, data: unknown): string {
  return template.replace(/\{\{(.*?)\}\}/g, (whole, inner: string) => {
    const m = /^\s*(json\s+)?\.([\w.]*)\s*$/.exec(inner);
    if (!m) throw new CliError(`--format ${template}: cannot read ${whole}: want {{.field.field}} or {{json .field}}`, 2);
    let v: unknown = data;
    for (const key of m[2] === '' ? [] : m[2]!.split('.')) {
      if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) throw new CliError(`--format ${template}: no field .${m[2]} in tsbuild info`, 2);
      v = (v as Record<string, unknown>)[key];
    }
    return m[1] === undefined && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') ? String(v) : JSON.stringify(v);
  });
}

export default class Info extends BaseCommand<typeof Info> {
  static override summary = 'Show the host, the store and the runtimes tsbuild would use';
  static override flags = {
    format: Flags.string({ description: 'json (the default), or a Go template such as {{.host.arch}}', default: 'json' }),
  };
  static override examples = ['<%= config.bin %> info', "<%= config.bin %> info --format '{{.host.cgroupVersion}}'"];

  async run(): Promise<void> {
    const { flags } = await this.parse(Info);
    const root = path.resolve(flags.root);
    const store = await this.store();
    const images = new Set((await store.listImages()).map((r) => r.descriptor.digest));
    const containersDir = path.join(root, 'containers');
    // The runtime's helpers where its package has them built (null when missing or unresolvable).
    const built = (file: () => string): string | null => {
      try {
        const p = file();
        return existsSync(p) ? p : null;
      } catch {
        return null;
      }
    };
    const info = {
      host: {
        os: process.platform,
        arch: goArch(),
        kernel: os.release(),
        cpus: os.availableParallelism(),
        memTotal: os.totalmem(),
        cgroupVersion: cgroupVersion(),
        cgroupControls: cgroupControls(),
        // buildah's rootless: not the host's root. An ordinary user's command runs re-executed in
        // a user namespace (user-namespace.ts), whose maps are shown as buildah shows them.
        rootless: process.geteuid?.() !== 0 || inUserNamespace(),
        ...(inUserNamespace() ? { idMappings: { uidmap: idMap('/proc/self/uid_map'), gidmap: idMap('/proc/self/gid_map') } } : {}),
        // podman info's host.security: whether --security-opt label=… and apparmor=… can apply.
        security: { selinuxEnabled: selinuxEnabled(), apparmorEnabled: apparmorEnabled() },
      },
      store: {
        root,
        snapshotter: 'overlay',
        imageCount: images.size,
        ...(existsSync(containersDir) ? { containerCount: readdirSync(containersDir, { withFileTypes: true }).filter((d) => d.isDirectory()).length } : {}),
      },
      runtime: {
        builtin: {
          // The helpers (packages/runtime/src/helper-chain.ts): run-helper (compiled from
          // run-helper.c) for a run, which enters its namespaces itself unless the run has a user
          // namespace of its own; node with helper.cjs for a copy, started by setpriv → unshare.
          helper: built(runHelperPath),
          copyHelper: built(helperPath),
          setpriv: findOnPath('setpriv', toolPath()) ?? null,
          unshare: findOnPath('unshare', toolPath()) ?? null,
          seccompArchitectures: SECCOMP_ARCHITECTURES,
        },
        ociRuntimes: Object.fromEntries(['runc', 'crun'].flatMap((n) => { const p = findOnPath(n, toolPath()); return p === undefined ? [] : [[n, p]]; })),
      },
    };
    print(flags.format === 'json' ? `${JSON.stringify(info, null, 2)}\n` : `${renderTemplate(flags.format, info)}\n`);
  }
}
