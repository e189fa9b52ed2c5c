import { InvalidArgumentError } from '@tsbuild/oci';
import { capabilityMask } from './capabilities.js';
import { etcFileContents } from './etc-files.js';
import type { RunRequest } from './helper-protocol.js';

/**
 * A run's request as run-helper.c reads it on fd 3: a little-endian u32 length, then that many
 * bytes of `key=value` records, each ended by a NUL (no JSON parser in the helper, and no escaping:
 * nothing a run passes on may hold a NUL, which execve could not pass on either). A list repeats
 * its key; an item of a list of records starts with its first key (root.type, mount.destination,
 * rlimit.name, device.host) and the keys after it fill that item in.
 *
 * What the helper cannot know is decided here: the capabilities as a mask, the seccomp program as
 * hex, the /etc files' contents (the host's resolv.conf, read and filtered for the run's network).
 * /etc/hosts without a given one is the helper's: its address is the network namespace's own.
 */
export function encodeRunRequest(req: Omit<RunRequest, 'chainPid'>): Buffer {
  const records: string[] = [];
  const put = (key: string, value: string | number | boolean): void => {
    const v = String(value);
    if (v.includes('\0')) throw new InvalidArgumentError(`run: ${key} holds a NUL byte: ${JSON.stringify(v.slice(0, 80))}`);
    records.push(`${key}=${v}`);
  };
  put('target', req.target);
  for (const m of req.rootfs) {
    put('root.type', m.type);
    put('root.source', m.source);
    for (const o of m.options) put('root.option', o);
  }
  for (const m of req.mounts ?? []) {
    put('mount.destination', m.destination);
    put('mount.type', m.type);
    if (m.source !== undefined) put('mount.source', m.source);
    if (m.sourcePath !== undefined) put('mount.source_path', m.sourcePath);
    for (const o of m.options) put('mount.option', o);
  }
  for (const a of req.args) put('arg', a);
  for (const e of req.env) put('env', e);
  put('cwd', req.cwd);
  put('uid', req.uid);
  put('gid', req.gid);
  for (const g of req.additionalGids) put('gid.extra', g);
  put('hostname', req.hostname);
  put('network', req.network);
  if (req.terminal === true) put('terminal', 1);
  if (req.init !== undefined) put('init', req.init);
  const sec = req.security;
  if (sec !== undefined) {
    put('security', 1);
    put('caps', capabilityMask(sec.capabilities).toString(16));
    if (sec.seccomp !== undefined) put('seccomp', Buffer.from(sec.seccomp, 'base64').toString('hex'));
    if (sec.noNewPrivileges) put('no_new_privs', 1);
    for (const p of sec.maskedPaths) put('masked', p);
    for (const p of sec.readonlyPaths) put('readonly', p);
    if (sec.userns !== undefined) put('userns', 1);
    const etc = etcFileContents(sec.etcFiles, req.hostname, req.network);
    if (etc.hosts !== undefined) put('etc.hosts', etc.hosts);
    put('etc.resolv', etc.resolvConf);
    put('etc.hostname', etc.hostname);
    if (sec.selinux !== undefined) {
      put('selinux.mount', sec.selinux.mountLabel);
      put('selinux.process', sec.selinux.processLabel);
    }
    if (sec.apparmorProfile !== undefined) put('apparmor', sec.apparmorProfile);
  }
  const proc = req.process;
  if (proc !== undefined) {
    for (const l of proc.rlimits) {
      put('rlimit.name', l.name);
      put('rlimit.resource', l.resource);
      put('rlimit.soft', l.soft);
      put('rlimit.hard', l.hard);
      if (l.orLower === true) put('rlimit.or_lower', 1);
    }
    if (proc.oomScoreAdj !== undefined) put('oom_score_adj', proc.oomScoreAdj);
    for (const d of proc.devices) {
      put('device.host', d.hostPath);
      put('device.path', d.containerPath);
      put('device.type', d.type);
      put('device.major', d.major);
      put('device.minor', d.minor);
    }
    if (proc.shmSize !== undefined) put('shm_size', proc.shmSize);
  }
  return Buffer.from(`${records.join('\0')}\0`);
}

/** The encoded request with the chain's pid (known once it is spawned) in front, framed by its length. */
export function frameRunRequest(body: Buffer, chainPid: number): Buffer {
  const pid = Buffer.from(`chain_pid=${chainPid}\0`);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(pid.length + body.length);
  return Buffer.concat([head, pid, body]);
}
