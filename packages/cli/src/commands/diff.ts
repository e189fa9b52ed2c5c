import { Args, Flags } from '../cli-kit.js';
import { compareImages, diffImage, openImageArg, type Change, type FileMeta, type ImageComparison, type ImageDiffReport } from '@tsbuild/image';
import { shortId } from '@tsbuild/oci';
import { BaseCommand, humanSize, table } from '../base-command.js';
import type { RegistryClient } from '@tsbuild/registry-client';
import { registryClient, registryFlags } from '../registry-flags.js';
import { print } from '../print.js';

export default class Diff extends BaseCommand<typeof Diff> {
  static override summary = 'Show what each layer of an image adds, changes and deletes, and its wasted space; or compare two images';
  static override description =
    'With one IMAGE: per layer, the paths added (A), changed (C) and deleted (D), and a wasted-space report as dive gives it ' +
    '(files overwritten or deleted by later layers, content duplicated across layers, dive\'s efficiency score). ' +
    '--max-wasted and --min-efficiency make it exit 1 for CI. With IMAGE1 IMAGE2: the difference between their flattened ' +
    'filesystems and their configs. docker://REF reads an image from a registry without storing it.';
  static override examples = [
    '<%= config.bin %> diff app:1',
    '<%= config.bin %> diff app:1 --layer 2 --path "usr/lib/**" --tree',
    '<%= config.bin %> diff app:1 --max-wasted 10MB --min-efficiency 0.95',
    '<%= config.bin %> diff app:1 app:2 --format json',
    '<%= config.bin %> diff docker://127.0.0.1:5000/app:1 --tls-verify=false',
  ];
  static override args = {
    image: Args.string({ description: 'image name or ID, or docker://REF', required: true }),
    other: Args.string({ description: 'a second image to compare the first with' }),
  };
  static override flags = {
    format: Flags.string({ description: 'output format', options: ['table', 'json'], default: 'table' }),
    tree: Flags.boolean({ description: 'show changes as a tree instead of a list' }),
    layer: Flags.integer({ description: 'only this layer\'s changes (0 = the bottom layer)', min: 0 }),
    path: Flags.string({ description: 'only paths matching this glob (or below a matching directory); repeatable', multiple: true }),
    'max-wasted': Flags.string({ description: 'exit 1 when wasted bytes exceed this (e.g. 5000000, 20MB, 1GiB)' }),
    'min-efficiency': Flags.string({ description: 'exit 1 when the efficiency score is below this (0..1)' }),
    'no-trunc': Flags.boolean({ description: 'show full digests and every wasted file' }),
    platform: Flags.string({ description: 'os/arch[/variant] of a multi-platform remote image' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Diff);
    const f = this.flags;
    const maxWasted = f['max-wasted'] !== undefined ? parseBytes(f['max-wasted']) : undefined;
    if (maxWasted === null) this.error(`--max-wasted: "${f['max-wasted']}" is not a byte count (examples: 5000000, 20MB, 1GiB)`, { exit: 2 });
    const minEfficiency = f['min-efficiency'] !== undefined ? Number(f['min-efficiency']) : undefined;
    if (minEfficiency !== undefined && !(minEfficiency >= 0 && minEfficiency <= 1)) this.error(`--min-efficiency: "${f['min-efficiency']}" is not a number from 0 to 1`, { exit: 2 });
    let client: RegistryClient | undefined;
    const getClient = async () => (client ??= await registryClient(f));
    const open = (arg: string) => openImageArg(arg, { store: () => this.store(), client: getClient, ...(f.platform ? { platform: f.platform } : {}) });
    const paint = painter(process.stdout.isTTY === true);
    try {
      if (args.other !== undefined) {
        if (maxWasted !== undefined || minEfficiency !== undefined || f.layer !== undefined) this.error('--max-wasted, --min-efficiency and --layer apply to one image, not a comparison', { exit: 2 });
        const [a, b] = await Promise.all([open(args.image), open(args.other)]);
        const cmp = await compareImages(a.image, b.image, { ...(f.path ? { paths: f.path } : {}) });
        if (f.format === 'json') print(`${JSON.stringify(cmp, null, 2)}\n`);
        else print(renderComparison(cmp, f.tree, paint));
        return;
      }
      const { image } = await open(args.image);
      const report = await diffImage(image, { ...(f.layer !== undefined ? { layer: f.layer } : {}), ...(f.path ? { paths: f.path } : {}) });
      if (f.layer !== undefined && report.layers.length === 0) this.error(`--layer ${f.layer}: the image has no such layer`, { exit: 2 });
      if (f.format === 'json') print(`${JSON.stringify(report, null, 2)}\n`);
      else print(renderReport(report, { tree: f.tree, noTrunc: f['no-trunc'] }, paint));
      const w = report.waste;
      if (maxWasted != null && w.wastedBytes > maxWasted) {
        process.stderr.write(`Error: wasted space ${humanSize(w.wastedBytes)} (${w.wastedBytes} bytes) exceeds --max-wasted ${maxWasted} bytes\n`);
        this.exit(1);
      }
      if (minEfficiency !== undefined && w.efficiency < minEfficiency) {
        process.stderr.write(`Error: efficiency ${w.efficiency.toFixed(4)} is below --min-efficiency ${minEfficiency}\n`);
        this.exit(1);
      }
    } finally {
      await client?.close();
    }
  }
}

/** Bytes from "5000000", "20MB" (1000-based, as sizes are printed) or "1GiB" (1024-based); null if not a size. */
export function parseBytes(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(s.trim());
  if (!m) return null;
  const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  return Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** power);
}

type Paint = (kind: 'A' | 'C' | 'D' | 'dim' | 'bold', s: string) => string;

/** ANSI colours on a terminal only: piped output stays plain for scripts and diffs. */
function painter(tty: boolean): Paint {
  const codes = { A: 32, C: 33, D: 31, dim: 2, bold: 1 };
  return (kind, s) => (tty ? `\x1b[${codes[kind]}m${s}\x1b[0m` : s);
}

const TYPE_CHAR: Record<FileMeta['type'], string> = { file: '-', dir: 'd', symlink: 'l', hardlink: 'h', char: 'c', block: 'b', fifo: 'p' };

/** `ls -l` permissions: type, rwx triplets, setuid/setgid/sticky as s/S and t/T. */
export function modeString(type: FileMeta['type'], mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string) =>
    `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  return TYPE_CHAR[type] + rwx(mode >> 6, (mode & 0o4000) !== 0, 's') + rwx(mode >> 3, (mode & 0o2000) !== 0, 's') + rwx(mode, (mode & 0o1000) !== 0, 't');
}

function displayName(m: FileMeta): string {
  const name = `/${m.path}${m.type === 'dir' ? '/' : ''}`;
  if (m.type === 'symlink') return `${name} -> ${m.linkname ?? ''}`;
  if (m.type === 'hardlink') return `${name} link to /${m.linkname ?? ''}`;
  return name;
}

function changeRow(c: Change, paint: Paint, name = displayName(c)): string[] {
  return [paint(c.kind, c.kind), modeString(c.type, c.mode), `${c.uid}:${c.gid}`, c.type === 'file' ? humanSize(c.size) : '-', paint(c.kind, name)];
}

/** Paths as an indented tree; directories that only lead to changes are shown dimmed. */
function renderTree(items: { path: string; label: (name: string) => string }[], paint: Paint, indent = '  '): string {
  const byPath = new Map(items.map((i) => [i.path, i]));
  const printed = new Set<string>();
  let out = '';
  for (const item of [...items].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    const parts = item.path.split('/');
    for (let d = 1; d <= parts.length; d++) {
      const p = parts.slice(0, d).join('/');
      if (printed.has(p)) continue;
      printed.add(p);
      const own = byPath.get(p);
      const pad = indent + '    '.repeat(d - 1);
      out += own ? `${pad}${own.label(parts[d - 1]!)}\n` : `${pad}${paint('dim', `${parts[d - 1]}/`)}\n`;
    }
  }
  return out;
}

function renderReport(r: ImageDiffReport, opts: { tree: boolean; noTrunc: boolean }, paint: Paint): string {
  let out = '';
  for (const l of r.layers) {
    const id = opts.noTrunc ? l.digest : shortId(l.digest);
    out += paint('bold', `Layer ${l.index}  ${id}  ${humanSize(l.size)}  A ${l.counts.A}  C ${l.counts.C}  D ${l.counts.D}`) + '\n';
    if (l.createdBy !== undefined) out += `  ${paint('dim', l.createdBy.replace(/\s+/g, ' '))}\n`;
    if (l.changes.length === 0) {
      out += '  (no changes shown)\n\n';
      continue;
    }
    if (opts.tree) {
      out += renderTree(
        l.changes.map((c) => ({ path: c.path, label: (name: string) => changeRow(c, paint, displayName({ ...c, path: name }).slice(1)).join(' ') })),
        paint,
      );
    } else {
      out += table(l.changes.map((c) => ['', ...changeRow(c, paint)])).replace(/^/gm, ' ').replace(/^ $/gm, '');
    }
    out += '\n';
  }
  const w = r.waste;
  out += paint('bold', 'Wasted space') + '\n';
  out += table([
    ['  efficiency', `${(w.efficiency * 100).toFixed(2)}%`],
    ['  wasted (overwritten + deleted)', `${humanSize(w.wastedBytes)} (${w.wastedBytes} bytes)`],
    ['  overwritten by later layers', humanSize(w.overwrittenBytes)],
    ['  deleted by later layers', humanSize(w.deletedBytes)],
    ['  duplicated across layers', humanSize(w.duplicateBytes)],
    ['  all file bytes in all layers', humanSize(w.totalBytes)],
  ]);
  const limit = opts.noTrunc ? Infinity : 20;
  if (w.files.length > 0) {
    out += `\n${paint('bold', 'Hidden by later layers')}\n`;
    const rows = [['  SIZE', 'LAYER', 'HIDDEN BY', 'WHY', 'PATH']];
    for (const f of w.files.slice(0, limit)) rows.push([`  ${humanSize(f.size)}`, String(f.layer), String(f.hiddenBy), f.reason, `/${f.path}`]);
    out += table(rows);
    if (w.files.length > limit) out += `  … ${w.files.length - limit} more (--no-trunc or --format json lists them all)\n`;
  }
  if (w.duplicates.length > 0) {
    out += `\n${paint('bold', 'Same content in several layers')}\n`;
    const rows = [['  WASTED', 'SIZE', 'SHA256', 'WHERE (layer:path)']];
    for (const d of w.duplicates.slice(0, limit)) {
      rows.push([`  ${humanSize(d.wastedBytes)}`, humanSize(d.size), opts.noTrunc ? d.sha256 : shortId(d.sha256), d.occurrences.map((o) => `${o.layer}:/${o.path}`).join(' ')]);
    }
    out += table(rows);
    if (w.duplicates.length > limit) out += `  … ${w.duplicates.length - limit} more\n`;
  }
  return out;
}

function renderComparison(cmp: ImageComparison, tree: boolean, paint: Paint): string {
  let out = paint('bold', `Filesystem: A ${cmp.files.filter((f) => f.kind === 'A').length}  C ${cmp.files.filter((f) => f.kind === 'C').length}  D ${cmp.files.filter((f) => f.kind === 'D').length}`) + '\n';
  const describe = (d: ImageComparison['files'][number]): string => {
    const m = (d.after ?? d.before)!;
    const what = d.kind === 'C' ? ` (${d.fields!.join(', ')})` : '';
    return `${modeString(m.type, m.mode)} ${m.uid}:${m.gid} ${m.type === 'file' ? humanSize(m.size) : '-'}${what}`;
  };
  if (tree) {
    out += renderTree(cmp.files.map((d) => ({ path: d.path, label: (name: string) => `${paint(d.kind, d.kind)} ${paint(d.kind, name)}  ${describe(d)}` })), paint);
  } else {
    for (const d of cmp.files) out += `  ${paint(d.kind, d.kind)} ${paint(d.kind, displayName((d.after ?? d.before)!))}  ${describe(d)}\n`;
  }
  out += `\n${paint('bold', `Config: ${cmp.config.length} field${cmp.config.length === 1 ? '' : 's'} differ`)}\n`;
  for (const c of cmp.config) {
    out += `  ${c.field}\n`;
    if (c.before !== undefined) out += `    ${paint('D', `- ${JSON.stringify(c.before)}`)}\n`;
    if (c.after !== undefined) out += `    ${paint('A', `+ ${JSON.stringify(c.after)}`)}\n`;
  }
  return out;
}
