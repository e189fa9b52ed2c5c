import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { BIN, REPO, type Result } from './harness.js';

/** A real unprivileged user made for a test (useradd -m), with the subordinate ids useradd gave it. */
export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** Its first /etc/subuid and /etc/subgid ranges (undefined when it has none). */
  subuid?: { start: number; count: number };
  subgid?: { start: number; count: number };
}

function subRange(file: string, name: string): { start: number; count: number } | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [who, start, count] = line.split(':');
    if (who === name) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/**
 * `useradd -m` of a unique name. Other tests may run useradd at the same time: shadow's lock
 * (lckpwdf) then refuses with status 10 ("cannot lock /etc/passwd"), which is retried.
 */
export async function createUser(prefix: string, extra: string[] = []): Promise<TestUser> {
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync('useradd', ['-m', '-s', '/bin/sh', ...extra, name], { encoding: 'utf8' });
    if (r.status === 0) break;
    if (attempt > 50 || !/lock/i.test(r.stderr)) throw new Error(`useradd ${name} failed: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  const id = (flag: string): number => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  const user: TestUser = { name, uid: id('-u'), gid: id('-g'), home: `/home/${name}` };
  const subuid = subRange('/etc/subuid', name);
  const subgid = subRange('/etc/subgid', name);
  if (subuid !== undefined) user.subuid = subuid;
  if (subgid !== undefined) user.subgid = subgid;
  return user;
}

/** PIDs of processes whose real uid is the user's or one of its subordinate ids. */
export function processesOf(user: TestUser): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${e}/status`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    const sub = user.subuid;
    if (uid === user.uid || (sub !== undefined && uid >= sub.start && uid < sub.start + sub.count)) pids.push(Number(e));
  }
  return pids;
}

/** Every mount, in any mount namespace, whose mountinfo line mentions `needle` (as "pid: line"). */
export function mountsMentioning(needle: string): string[] {
  const out = new Set<string>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      for (const line of readFileSync(`/proc/${e}/mountinfo`, 'utf8').split('\n')) if (line.includes(needle)) out.add(`${e}: ${line}`);
    } catch {
      // gone meanwhile
    }
  }
  return [...out];
}

/**
 * Kills what is left of the user's processes (by pid: they are the test's, started as that user),
 * `userdel -r`, and drops its subordinate id lines should userdel have left them.
 */
export async function removeUser(user: TestUser): Promise<void> {
  for (const pid of processesOf(user)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync('userdel', ['-r', user.name], { encoding: 'utf8' });
    if (r.status === 0 || r.status === 12 /* home not removed */ || /does not exist/.test(r.stderr)) break;
    if (attempt > 50) throw new Error(`userdel ${user.name} failed: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = readFileSync(file, 'utf8');
    const kept = text.split('\n').filter((l) => !l.startsWith(`${user.name}:`));
    if (kept.join('\n') !== text) writeFileSync(file, kept.join('\n'));
  }
  spawnSync('rm', ['-rf', user.home]);
}

/** The environment of a login of the user: nothing of the test's (no TSBUILD_ROOT). */
export function userEnv(user: TestUser, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { HOME: user.home, USER: user.name, LOGNAME: user.name, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...extra };
}

/**
 * `tsbuild ARGS` as the user: setpriv drops to its uid, gid and groups and execs the command, so
 * the child's pid is the outer tsbuild's own (node, after bin/tsbuild's exec).
 */
export function spawnAs(user: TestUser, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; command?: string[]; detached?: boolean } = {}) {
  const command = opts.command ?? [BIN, ...args];
  return spawn('setpriv', ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', ...command], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? userEnv(user),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: opts.detached ?? false,
  });
}

export function runAs(user: TestUser, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; command?: string[]; input?: string } = {}): Promise<Result> {
  return collect(spawnAs(user, args, opts), opts.input);
}

/** The child's output and status; its stdin gets `input` and is closed, or is left open with null. */
export function collect(child: ReturnType<typeof spawn>, input: string | null = ''): Promise<Result> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    child.on('error', reject);
    if (input !== null) child.stdin?.end(input);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Waits until `check` returns something other than undefined, polling every 50 ms. */
export async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
