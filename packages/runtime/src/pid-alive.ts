/** Whether a process exists (EPERM means it does, owned by someone else). Leftovers of a dead tsbuild are swept by this. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
