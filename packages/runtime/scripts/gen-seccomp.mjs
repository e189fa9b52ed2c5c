#!/usr/bin/env node
// Regenerates the seccomp syscall tables, src/seccomp/generated/<arch>.ts, from the kernel's UAPI
// headers (Debian: linux-libc-dev), the same numbers libseccomp's tables hold:
//   npm run gen:seccomp -w @tsbuild/runtime
//   node packages/runtime/scripts/gen-seccomp.mjs [--out DIR] [--include DIR] [--generic DIR]
// --out defaults to src/seccomp/generated, --include to /usr/include/x86_64-linux-gnu (its asm/
// holds the x86 tables), --generic to /usr/include/asm-generic. The output depends on the headers
// only: src/seccomp/generated.test.ts runs this again and compares the files byte for byte.
// x32 numbers keep __X32_SYSCALL_BIT (0x40000000): that is the number seccomp_data.nr carries.
// AArch64 has no table of its own: it is asm-generic/unistd.h read the way arm64's
// asm/unistd.h includes it (64-bit, with the __ARCH_WANT_* it defines).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string', default: fileURLToPath(new URL('../src/seccomp/generated', import.meta.url)) },
    include: { type: 'string', default: '/usr/include/x86_64-linux-gnu' },
    generic: { type: 'string', default: '/usr/include/asm-generic' },
  },
});
const { include, generic } = opts;
const X32_SYSCALL_BIT = 0x40000000;

function parse(file) {
  const table = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^#define __NR_([a-z0-9_]+)\s+(?:\(__X32_SYSCALL_BIT \+ (\d+)\)|(\d+))\s*$/.exec(line);
    if (m === null) continue;
    table[m[1]] = m[2] !== undefined ? X32_SYSCALL_BIT + Number(m[2]) : Number(m[3]);
  }
  if (Object.keys(table).length < 300) throw new Error(`${file}: only ${Object.keys(table).length} syscalls found`);
  return table;
}

/**
 * asm-generic/unistd.h for a 64-bit architecture that defines `wants` (its __ARCH_WANT_*): a
 * small preprocessor for the #if/#ifdef/#else/#endif, defined() and __BITS_PER_LONG the file
 * uses, and its 64-bit aliases (__NR_fstat → __NR3264_fstat and the like).
 */
function parseGeneric(file, wants) {
  const defined = new Set(wants);
  const values = new Map();
  const stack = []; // one entry per open #if: [this branch taken, any branch taken, enclosing taken]
  const taking = () => stack.every((f) => f[0]);
  const evaluate = (cond) => {
    const expr = cond
      .replace(/\/\*.*?\*\//g, '')
      .replace(/defined\s*\(\s*(\w+)\s*\)/g, (_, n) => (defined.has(n) ? '1' : '0'))
      .replace(/__BITS_PER_LONG/g, '64');
    if (!/^[\d\s()!=<>&|]*$/.test(expr)) throw new Error(`${file}: cannot evaluate #if ${cond}`);
    return Boolean(Function(`return (${expr});`)());
  };
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    let m;
    if ((m = /^#if\s+(.*)$/.exec(line))) stack.push([evaluate(m[1]), false]);
    else if ((m = /^#ifdef\s+(\w+)/.exec(line))) stack.push([defined.has(m[1]), false]);
    else if ((m = /^#ifndef\s+(\w+)/.exec(line))) stack.push([!defined.has(m[1]), false]);
    else if (/^#else\b/.test(line)) {
      const top = stack[stack.length - 1];
      top[0] = !top[0] && !top[1];
    } else if (/^#endif\b/.test(line)) stack.pop();
    else if (!taking()) continue;
    else if ((m = /^#undef\s+(\w+)/.exec(line))) {
      defined.delete(m[1]);
      values.delete(m[1]);
    } else if ((m = /^#define\s+(\w+)(?:\s+(\w+))?/.exec(line))) {
      defined.add(m[1]);
      if (m[2] !== undefined) values.set(m[1], /^\d+$/.test(m[2]) ? Number(m[2]) : values.get(m[2]));
    }
    // Remember which branch of an #if/#else was taken.
    const top = stack[stack.length - 1];
    if (top !== undefined && top[0]) top[1] = true;
  }
  const table = {};
  for (const [k, v] of values) {
    if (!k.startsWith('__NR_') || k === '__NR_syscalls' || k === '__NR_arch_specific_syscall' || typeof v !== 'number') continue;
    table[k.slice('__NR_'.length)] = v;
  }
  if (Object.keys(table).length < 300) throw new Error(`${file}: only ${Object.keys(table).length} syscalls found`);
  return table;
}

// One file per audit architecture: [file name, exported name, source header, table].
const tables = [
  ['x86_64', 'X86_64', `${include}/asm/unistd_64.h`, (f) => parse(f)],
  ['i386', 'I386', `${include}/asm/unistd_32.h`, (f) => parse(f)],
  ['x32', 'X32', `${include}/asm/unistd_x32.h`, (f) => parse(f)],
  // arch/arm64/include/uapi/asm/unistd.h (Linux 6.1) defines these before including the generic table.
  ['aarch64', 'AARCH64', `${generic}/unistd.h`, (f) => parseGeneric(f, ['__ARCH_WANT_RENAMEAT', '__ARCH_WANT_NEW_STAT', '__ARCH_WANT_SET_GET_RLIMIT', '__ARCH_WANT_TIME32_SYSCALLS', '__ARCH_WANT_SYS_CLONE3', '__ARCH_WANT_MEMFD_SECRET'])],
];

mkdirSync(opts.out, { recursive: true });
const written = [];
for (const [file, name, header, read] of tables) {
  const table = read(header);
  let out = `// Generated by packages/runtime/scripts/gen-seccomp.mjs (npm run gen:seccomp) from ${header}.\n`;
  out += '// Do not edit: run the script again against newer kernel headers.\n\n';
  out += `/**\n * Syscall name → number, as seccomp_data.nr carries it for ${name}. Made on each call, and only\n`;
  out += ' * when a filter is compiled: every command whose bundle holds the runtime would otherwise build\n';
  out += ' * all four tables as it loads.\n */\n';
  out += `export function ${file}Syscalls(): Readonly<Record<string, number>> {\n  return {\n`;
  for (const [k, v] of Object.entries(table).sort((a, b) => a[1] - b[1])) out += `    ${k}: ${v},\n`;
  out += '  };\n}\n';
  writeFileSync(path.join(opts.out, `${file}.ts`), out);
  written.push(`${file}.ts ${Object.keys(table).length}`);
}
console.log(`wrote ${opts.out}: ${written.join(', ')}`);
