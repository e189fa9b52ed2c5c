export { syscallError, type SyscallError } from './libc.js';
export * from './mount.js';
export * from './xattr.js';
export * from './nodes.js';
export * from './process.js';
export * from './exec.js';
