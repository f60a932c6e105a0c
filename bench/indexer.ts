/**
 * Layer indexer benchmark: zTOC build throughput against Node's own gunzip on the same layer, and peak RSS
 * while indexing a 1 GB-uncompressed layer.
 *   node --import tsx bench/indexer.ts [--size-mb 300] [--runs 2] [--rss-mb 1024]
 * Layer A: a generated ~300 MB tar of mixed file sizes (1 KiB–8 MiB; ~80% random bytes, ~20% word text),
 * `gzip -6 -n`, cached under .cache/bench/. Measured in one run, best of N, uncompressed MB/s: zlib
 * createGunzip fed 1 MiB file reads, zlib.gunzipSync of the whole blob, and `indexLayer` (default 4 MiB
 * spans: inflate, checkpoints, span digests, layer sha256, tar TOC, zTOC encoding) streamed from the file
 * in 1 MiB reads with the native and the JS engine. Layer B: 1 GiB of tar made of files that repeat a
 * random 24 KiB block, `pigz -1` (cheap to make); a child process per engine indexes it and reports
 * `process.resourceUsage().maxRSS`, next to a child that only gunzips it (Node's own floor). Writes
 * bench/results/indexer.json and bench/results/indexer.md (commit, node, machine, figures, targets).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createGunzip, gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { IndexerPool, indexLayer, nativeEngineAvailable, type EngineName } from '../src/indexer/index.js';
import { MediaType } from '../src/oci/media-types.js';
import { best } from './lib/timing.js';

const MiB = 1 << 20;
const CACHE = fileURLToPath(new URL('../.cache/bench/', import.meta.url));
const RESULTS = new URL('./results/', import.meta.url);

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A ustar header for a regular file (names here are short ASCII). */
function header(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (off: number, s: string): void => { h.write(s, off, 'latin1'); };
  put(0, name);
  put(100, '0000644\0');
  put(108, '0000000\0');
  put(116, '0000000\0');
  put(124, size.toString(8).padStart(11, '0') + '\0');
  put(136, '14536230000\0');
  put(156, '0');
  put(257, 'ustar\0');
  put(263, '00');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  put(148, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** Writes a tar of the given files through `compressor` (a shell pipeline reading stdin) into `out`. */
async function writeLayer(out: string, compressor: string, files: Iterable<[string, Buffer]>): Promise<void> {
  const tmp = `${out}.tmp`;
  const child = spawn('sh', ['-c', `${compressor} > '${tmp}'`], { stdio: ['pipe', 'inherit', 'inherit'] });
  const done = new Promise<void>((resolve, reject) => child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`${compressor} exited ${c}`)))));
  const write = async (b: Buffer): Promise<void> => {
    if (!child.stdin.write(b)) await new Promise((r) => child.stdin.once('drain', r));
  };
  for (const [name, data] of files) {
    await write(header(name, data.length));
    await write(data);
    if (data.length % 512) await write(Buffer.alloc(512 - (data.length % 512)));
  }
  await write(Buffer.alloc(10240));
  child.stdin.end();
  await done;
  renameSync(tmp, out);
}

function* mixedFiles(totalMb: number): Generator<[string, Buffer]> {
  const words = Array.from({ length: 3000 }, (_, i) => `w${(i * 7919).toString(36)}`);
  const parts: string[] = [];
  let seed = 7;
  for (let n = 0; n < 2 * MiB; ) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const w = words[seed % words.length] as string;
    parts.push(w, seed % 11 === 0 ? '\n' : ' ');
    n += w.length + 1;
  }
  const text = Buffer.from(parts.join(''));
  let total = 0;
  for (let i = 0; total < totalMb * MiB; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const size = 1024 + (seed % 6 === 0 ? seed % (8 * MiB) : seed % (512 * 1024)); // many small, some big
    const data = i % 5 === 4 ? Buffer.concat(Array.from({ length: Math.ceil(size / text.length) + 1 }, () => text)).subarray(i % 1000, (i % 1000) + size) : randomBytes(size);
    total += size;
    yield [`mixed/${i % 50}/f${i}`, data];
  }
}

function* repeatedFiles(totalMb: number): Generator<[string, Buffer]> {
  const fileSize = 4 * MiB;
  for (let i = 0; i * 4 < totalMb; i++) {
    const block = randomBytes(24 * 1024);
    const data = Buffer.alloc(fileSize);
    for (let p = 0; p < fileSize; p += block.length) block.copy(data, p);
    yield [`big/f${i}`, data];
  }
}

async function streamGunzip(file: string): Promise<number> {
  let n = 0;
  const g = createGunzip({ chunkSize: 64 * 1024 });
  g.on('data', (c: Buffer) => { n += c.length; });
  const done = new Promise<void>((resolve, reject) => g.on('end', resolve).on('error', reject));
  for await (const chunk of createReadStream(file, { highWaterMark: MiB })) {
    if (!g.write(chunk)) await new Promise((r) => g.once('drain', r));
  }
  g.end();
  await done;
  return n;
}

async function build(file: string, engine: EngineName): Promise<{ uncompressed: number; spans: number; files: number }> {
  const r = await indexLayer(createReadStream(file, { highWaterMark: MiB }), { mediaType: MediaType.ociLayerGzip, engine });
  if (r.status !== 'indexed') throw new Error(`layer skipped: ${r.code} ${r.reason}`);
  return { uncompressed: r.uncompressedSize, spans: r.spanCount, files: r.fileCount };
}

/** The proxy's path: a worker thread inflates while this thread reads and hashes the layer. */
async function buildPooled(file: string): Promise<void> {
  const pool = new IndexerPool({ size: 1 });
  try {
    const r = await pool.index(createReadStream(file, { highWaterMark: MiB }), { mediaType: MediaType.ociLayerGzip, engine: 'native' });
    if (r.status !== 'indexed') throw new Error(`layer skipped: ${r.code} ${r.reason}`);
  } finally {
    await pool.close();
  }
}


/** Child mode: index (or only gunzip) one file and print the peak RSS. */
async function child(file: string, what: string): Promise<void> {
  const t = process.hrtime.bigint();
  const out = what === 'gunzip' ? { uncompressed: await streamGunzip(file) } : await build(file, what as EngineName);
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  // maxRSS (getrusage) carries over the parent's RSS at fork time on Linux; VmHWM is this process's own peak.
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  process.stdout.write(JSON.stringify({ ...out, seconds, maxRssKiB: process.resourceUsage().maxRSS, vmHwmKiB: hwm ? Number(hwm) : null }) + '\n');
}

function rssChild(file: string, what: string): { maxRssMiB: number; vmHwmMiB: number | null; seconds: number; uncompressed: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', file, what], { encoding: 'utf8', maxBuffer: MiB });
  if (r.status !== 0) throw new Error(`rss child ${what} failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { maxRssKiB: number; vmHwmKiB: number | null; seconds: number; uncompressed: number };
  return { maxRssMiB: +(j.maxRssKiB / 1024).toFixed(1), vmHwmMiB: j.vmHwmKiB === null ? null : +(j.vmHwmKiB / 1024).toFixed(1), seconds: +j.seconds.toFixed(2), uncompressed: j.uncompressed };
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb') ?? 300);
  const rssMb = Number(arg('rss-mb') ?? 1024);
  const runs = Number(arg('runs') ?? 2);
  mkdirSync(CACHE, { recursive: true });
  const layerA = `${CACHE}mixed-${sizeMb}m.tar.gz`;
  const layerB = `${CACHE}repeated-${rssMb}m.tar.gz`;
  if (!existsSync(layerA)) { console.log(`generating ${layerA}`); await writeLayer(layerA, 'gzip -6 -n', mixedFiles(sizeMb)); }
  if (!existsSync(layerB)) { console.log(`generating ${layerB}`); await writeLayer(layerB, 'pigz -1 -n -p 2', repeatedFiles(rssMb)); }

  // RSS first, while this process is small: a child's getrusage maxRSS starts from its parent's RSS.
  const rss: Array<{ name: string; maxRssMiB: number; vmHwmMiB: number | null; seconds: number }> = [];
  const rssRaw = { compressed: readFileSync(layerB).length, uncompressed: 0 };
  for (const what of ['gunzip', ...(nativeEngineAvailable() ? ['native', 'js'] : ['js'])]) {
    const r = rssChild(layerB, what);
    rssRaw.uncompressed = r.uncompressed;
    rss.push({ name: what === 'gunzip' ? 'zlib.createGunzip only (floor)' : `zTOC build, ${what} engine`, maxRssMiB: r.maxRssMiB, vmHwmMiB: r.vmHwmMiB, seconds: r.seconds });
  }

  const blob = readFileSync(layerA);
  const raw = await streamGunzip(layerA); // also warms the page cache
  const mb = raw / 1e6;
  const rows: Array<{ name: string; seconds: number; mbPerS: number; vsGunzipStream: number; vsGunzipSync: number }> = [];
  const times: Record<string, number> = {};
  times['zlib.createGunzip (1 MiB reads)'] = await best(runs, () => streamGunzip(layerA));
  times['zlib.gunzipSync'] = await best(runs, () => gunzipSync(blob).length);
  const engines: EngineName[] = nativeEngineAvailable() ? ['native', 'js'] : ['js'];
  let layerInfo = { uncompressed: 0, spans: 0, files: 0 };
  for (const engine of engines) {
    times[`zTOC build, ${engine} engine`] = await best(runs, async () => { layerInfo = await build(layerA, engine); });
  }
  if (nativeEngineAvailable()) times['zTOC build, native engine, IndexerPool (worker + hashing thread)'] = await best(runs, () => buildPooled(layerA));
  const gs = times['zlib.createGunzip (1 MiB reads)'] as number;
  const gsync = times['zlib.gunzipSync'] as number;
  for (const [name, s] of Object.entries(times)) {
    rows.push({ name, seconds: +s.toFixed(3), mbPerS: +(mb / s).toFixed(1), vsGunzipStream: +(gs / s).toFixed(2), vsGunzipSync: +(gsync / s).toFixed(2) });
  }

  let commit = 'unknown';
  try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { /* not a checkout */ }
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() !== '';
  const machine = { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', nproc: cpus().length };
  const native = rows.find((r) => r.name.startsWith('zTOC build, native engine, IndexerPool')) ?? rows.find((r) => r.name === 'zTOC build, native engine');
  const worstRss = Math.max(...rss.filter((r) => r.name.startsWith('zTOC')).map((r) => r.vmHwmMiB ?? r.maxRssMiB));
  const targets = {
    'native build >= 1.0x gunzip (stream)': { value: native?.vsGunzipStream ?? null, met: (native?.vsGunzipStream ?? 0) >= 1 },
    'peak RSS < 256 MiB (1 GB layer)': { value: worstRss, met: worstRss < 256 },
  };
  const result = {
    commit: dirty ? `${commit}+uncommitted` : commit, date: new Date().toISOString(), ...machine, runs,
    layer: { file: layerA, compressedBytes: blob.length, uncompressedBytes: raw, tarBytes: layerInfo.uncompressed, spans: layerInfo.spans, entries: layerInfo.files, spanSize: '4 MiB (default)' },
    throughput: rows,
    rssLayer: { file: layerB, ...rssRaw },
    rss,
    targets,
  };
  console.log(`layer A: ${(blob.length / 1e6).toFixed(1)} MB gzip -6 -> ${mb.toFixed(1)} MB, ${layerInfo.files} entries, ${layerInfo.spans} spans; node ${machine.node}; ${machine.cpu} x${machine.nproc}; best of ${runs}`);
  console.table(rows);
  console.log(`layer B: ${(rssRaw.compressed / 1e6).toFixed(1)} MB pigz -1 -> ${(rssRaw.uncompressed / 1e6).toFixed(1)} MB`);
  console.table(rss);
  for (const [k, v] of Object.entries(targets)) console.log(`target ${k}: ${v.value} ${v.met ? 'MET' : 'NOT MET'}`);

  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(new URL('indexer.json', RESULTS), JSON.stringify(result, null, 2) + '\n');
  const md = [
    `# Indexer benchmark`,
    ``,
    `\`node --import tsx bench/indexer.ts\` — commit ${result.commit}, ${result.date}, node ${machine.node}, ${machine.cpu} × ${machine.nproc} (nproc), best of ${runs}.`,
    ``,
    `Layer A: ${(blob.length / 1e6).toFixed(1)} MB (gzip -6) → ${mb.toFixed(1)} MB tar, ${layerInfo.files} entries, ${layerInfo.spans} spans of 4 MiB. MB/s are uncompressed bytes per second.`,
    ``,
    `| | seconds | MB/s | × gunzip stream | × gunzipSync |`,
    `|---|---:|---:|---:|---:|`,
    ...rows.map((r) => `| ${r.name} | ${r.seconds} | ${r.mbPerS} | ${r.vsGunzipStream} | ${r.vsGunzipSync} |`),
    ``,
    `Layer B: ${(rssRaw.compressed / 1e6).toFixed(1)} MB (pigz -1) → ${(rssRaw.uncompressed / 1e6).toFixed(1)} MB tar, indexed in a child process.`,
    ``,
    `| | peak RSS, VmHWM (MiB) | getrusage maxRSS (MiB) | seconds |`,
    `|---|---:|---:|---:|`,
    ...rss.map((r) => `| ${r.name} | ${r.vmHwmMiB} | ${r.maxRssMiB} | ${r.seconds} |`),
    ``,
    `| target | value | met |`,
    `|---|---:|---|`,
    ...Object.entries(targets).map(([k, v]) => `| ${k} | ${v.value} | ${v.met ? 'yes' : 'no'} |`),
    ``,
  ].join('\n');
  writeFileSync(new URL('indexer.md', RESULTS), md);
}

const ci = process.argv.indexOf('--child');
if (ci >= 0) await child(process.argv[ci + 1] as string, process.argv[ci + 2] as string);
else await main();
