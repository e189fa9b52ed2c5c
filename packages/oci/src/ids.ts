/**
 * The highest uid or gid a process can take: ids are 32-bit, and (uid_t)-1 = 4294967295 means
 * "leave unchanged" to setresuid(2) and chown(2). A larger number would be cut to 32 bits on
 * its way to the kernel (99999999999 became uid 1215752191), so every id is checked against it.
 */
export const MAX_ID = 4294967294;

export function isValidId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= MAX_ID;
}
