/**
 * FUSE server overhead on one generated tree of many small files (issue #5: read every file of a layer in
 * <= 5x the time from local disk).
 *   node --import tsx bench/fuse-ops.ts [--files 20000] [--runs 1] [--ops]   (--ops: print the native server's request counts)
 * The tree: `--files` regular files of 100-4000 B in directories of 100, laid out like a tar stream in one
 * in-memory buffer. Configurations, each timed as `tar -cf - . | wc -c` in the mount (first pass, then a
 * second pass on the same mount), then checked byte for byte (sha256 of every file's content, in name
 * order, equal to local disk's):
 *   - local disk: the same files written to a temp dir (page cache warm);
 *   - fuse-native: layer-fs's libfuse 2 server, content from memory (`read` + `readCached`);
 *   - native (content.read): the libfuse3 low-level server, reads handed to JS, content from memory;
 *   - native (contentFile): the same server with the stream in a file and every span present: no JS at all.
 * Mount time (serializing the tree + mount) is printed too. Writes bench/results/fuse-ops.md and .json.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileMetadata } from '../src/indexer/types.js';
import { buildLayerTree, mountLayer, nativeFuseAvailable, type LayerContent, type MountLayerOptions, type NativeMountedLayer } from '../src/snapshotter/fs/index.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const FILES = arg('files', 20_000);
const RUNS = arg('runs', 1);
const SPAN = 4 << 20;

function shell(cmd: string): Promise<string> {
  return new Promise((resolve, reject) => execFile('sh', ['-c', cmd], { maxBuffer: 1 << 20, timeout: 600_000 }, (err, out, se) => (err ? reject(new Error(`${cmd}: ${se}`)) : resolve(out.trim()))));
}

async function timed(cmd: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await shell(cmd);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const dir = mkdtempSync(join(tmpdir(), 'soci-bench-fuse-'));
const toc: FileMetadata[] = [];
const sizes: number[] = [];
let pos = 0;
for (let i = 0; i < FILES; i++) {
  const size = 100 + ((i * 2654435761) >>> 0) % 3900;
  const d = `d${Math.floor(i / 100)}`;
  if (i % 100 === 0) {
    pos += 512;
    toc.push({ name: `${d}/`, type: 'dir', uncompressedOffset: pos, uncompressedSize: 0, linkname: '', mode: 0o755, uid: 0, gid: 0, uname: '', gname: '', modTime: '2024-01-01T00:00:00Z', devmajor: 0, devminor: 0, xattrs: [] });
  }
  pos += 512;
  toc.push({ name: `${d}/f${i}.py`, type: 'reg', uncompressedOffset: pos, uncompressedSize: size, linkname: '', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', modTime: '2024-01-01T00:00:00Z', devmajor: 0, devminor: 0, xattrs: [] });
  sizes.push(size);
  pos += Math.ceil(size / 512) * 512;
}
const stream = Buffer.alloc(pos + 1024);
for (let i = 0; i < stream.length; i++) stream[i] = (i * 131 + (i >>> 11)) & 0xff;

// local disk copy
const local = join(dir, 'local');
for (const e of toc) {
  if (e.type === 'dir') mkdirSync(join(local, e.name), { recursive: true });
  else writeFileSync(join(local, e.name), stream.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize));
}
// content file: the whole stream, every span present
const contentPath = join(dir, 'content.bin');
writeFileSync(contentPath, stream);
const nspans = Math.ceil(stream.length / SPAN);
const spanStarts = new Float64Array(nspans + 1).map((_, i) => Math.min(i * SPAN, stream.length));
const present = new Uint8Array(new SharedArrayBuffer(nspans)).fill(1);

const memory: LayerContent = {
  read: async (off, len) => stream.subarray(off, off + len),
  readCached: (off, len, into) => {
    stream.copy(into, 0, off, off + len);
    return true;
  },
};
const withFile: LayerContent = { ...memory, contentFile: { path: contentPath, spanStarts, present, ensure: async () => undefined } };

const TAR = 'tar -cf - . | wc -c';
const HASH = "find . -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16";
const localHash = await shell(`cd ${local} && ${HASH}`);

interface Row { name: string; mountMs?: number; first: number; second: number; hash: string }
const rows: Row[] = [];
const best = (xs: number[]): number => Math.min(...xs);

{
  const first: number[] = [];
  const second: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    first.push(await timed(`cd ${local} && ${TAR}`));
    second.push(await timed(`cd ${local} && ${TAR}`));
  }
  rows.push({ name: 'local disk (page cache warm)', first: best(first), second: best(second), hash: localHash });
}

const configs: Array<{ name: string; content: LayerContent; backend: MountLayerOptions['backend']; listPrefetchBytes?: number }> = [
  { name: 'fuse-native, content from memory', content: memory, backend: 'fuse-native' },
  ...(nativeFuseAvailable() ? [
    { name: 'native, content.read from memory', content: memory, backend: 'native' as const },
    { name: 'native, contentFile (all spans present), no list prefetch', content: withFile, backend: 'native' as const, listPrefetchBytes: 0 },
    { name: 'native, contentFile (all spans present), list prefetch 64 KiB', content: withFile, backend: 'native' as const },
  ] : []),
];
for (const c of configs) {
  const first: number[] = [];
  const second: number[] = [];
  let mountMs = Infinity;
  let hash = '';
  for (let r = 0; r < RUNS; r++) {
    const mnt = join(dir, `mnt-${rows.length}-${r}`);
    const t0 = performance.now();
    const tree = buildLayerTree(toc);
    const m = await mountLayer(mnt, tree, c.content, { backend: c.backend, allowOther: false, ...(c.listPrefetchBytes !== undefined ? { listPrefetchBytes: c.listPrefetchBytes } : {}) });
    mountMs = Math.min(mountMs, performance.now() - t0);
    try {
      const stats = (): string => ('stats' in m ? JSON.stringify({ ...(m as NativeMountedLayer).stats().ops, pushed: (m as NativeMountedLayer).stats().pushed }) : '');
      first.push(await timed(`cd ${mnt} && ${TAR}`));
      if (process.argv.includes('--ops')) console.log(`${c.name}: requests after the first pass ${stats()}`);
      second.push(await timed(`cd ${mnt} && ${TAR}`));
      if (process.argv.includes('--ops')) console.log(`${c.name}: requests after the second pass ${stats()}`);
      hash = await shell(`cd ${mnt} && ${HASH}`);
    } finally {
      await m.unmount();
    }
  }
  rows.push({ name: c.name, mountMs, first: best(first), second: best(second), hash });
}

const base = rows[0] as Row;
const commit = (() => {
  try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return 'unknown'; }
})();
const machine = `${cpus().length}x ${cpus()[0]?.model ?? '?'}, Linux ${release()}, Node ${process.version}`;
const lines = [
  '# FUSE server overhead: `tar -cf - . | wc -c` over a tree of small files',
  '',
  `Command: \`node --import tsx bench/fuse-ops.ts --files ${FILES} --runs ${RUNS}\` (best of ${RUNS}). Commit ${commit}; ${machine}.`,
  `Tree: ${FILES} files of 100-3999 B in ${Math.ceil(FILES / 100)} directories, ${(pos / 1e6).toFixed(1)} MB of tar stream. Content check: sha256 of all file bytes in name order equals local disk's.`,
  '',
  '| configuration | mount (ms) | first pass (s) | x disk | second pass (s) | x disk | content |',
  '|---|---:|---:|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.name} | ${r.mountMs === undefined ? '' : r.mountMs.toFixed(0)} | ${r.first.toFixed(3)} | ${(r.first / base.first).toFixed(1)} | ${r.second.toFixed(3)} | ${(r.second / base.second).toFixed(1)} | ${r.hash === localHash ? 'equal' : `DIFFERS (${r.hash})`} |`),
  '',
];
const md = lines.join('\n');
console.log(md);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/fuse-ops.md', import.meta.url), md);
writeFileSync(new URL('./results/fuse-ops.json', import.meta.url), `${JSON.stringify({ commit, machine, files: FILES, runs: RUNS, streamBytes: pos, rows }, null, 2)}\n`);
rmSync(dir, { recursive: true, force: true });
if (rows.some((r) => r.hash !== localHash)) process.exitCode = 1;
