/**
 * Micro-benchmark of the gzip checkpoint engine against Node's own gunzip, on a generated ~100 MB
 * tar.gz (80% word text, 20% random bytes, `gzip -6`; or `--file PATH` for a real layer).
 *   node --import tsx bench/gzip-engine.ts [--size-mb 100] [--file x.tar.gz] [--runs 3]
 * Measures, best of N runs, uncompressed MB/s of: zlib.gunzipSync, zlib.createGunzip fed 64 KiB chunks,
 * GzipCheckpointer with the native engine and with the JS (pako) engine (4 MiB spans, 64 KiB input
 * chunks, checkpoints, windows and span digests included, output discarded), and span restore: every
 * 4 MiB span inflated from its checkpoint into a reused buffer, as the snapshotter does, with each native
 * span inflater (zlib's, ISA-L's when built). Prints a table and writes bench/results/gzip-engine.json
 * (commit, machine, figures).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createGunzip, gunzipSync } from 'node:zlib';
import { GzipCheckpointer, nativeEngineAvailable, nativeSpanInflaters, spansFromCheckpoints } from '../src/indexer/gzip/index.js';
import { best } from './lib/timing.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function generate(dir: string, sizeMb: number): string {
  const words = Array.from({ length: 2000 }, (_, i) => `w${(i * 7919).toString(36)}${'xyz'.slice(0, i % 4)}`);
  let text = '';
  let seed = 42;
  while (text.length < 8 << 20) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    text += words[seed % words.length] + (seed % 13 === 0 ? '\n' : ' ');
  }
  const base = Buffer.from(text);
  const files = join(dir, 'files');
  mkdirSync(files);
  let total = 0;
  for (let i = 0; total < sizeMb << 20; i++) {
    const n = 100_000 + ((i * 2654435761) % 3_000_000);
    const data = i % 5 === 4 ? randomBytes(n) : base.subarray((i * 524287) % (base.length - n), ((i * 524287) % (base.length - n)) + n);
    writeFileSync(join(files, `f${i}`), data);
    total += n;
  }
  const out = join(dir, 'bench.tar.gz');
  execFileSync('sh', ['-c', `tar cf - -C '${dir}' files | gzip -6 -n > '${out}'`]);
  return out;
}



const runs = Number(arg('runs') ?? 3);
const tmp = mkdtempSync(join(tmpdir(), 'gzip-bench-'));
try {
  const file = arg('file') ?? generate(tmp, Number(arg('size-mb') ?? 100));
  const gz = readFileSync(file);
  const rawSize = gunzipSync(gz).length;
  const CHUNK = 65536;
  const results: Record<string, number> = {};

  results['zlib.gunzipSync'] = await best(runs, () => { gunzipSync(gz); });
  results['zlib.createGunzip'] = await best(runs, () => new Promise<void>((resolve, reject) => {
    const g = createGunzip();
    g.on('data', () => {}).on('end', resolve).on('error', reject);
    for (let p = 0; p < gz.length; p += CHUNK) g.write(gz.subarray(p, p + CHUNK));
    g.end();
  }));
  const engines = nativeEngineAvailable() ? (['native', 'js'] as const) : (['js'] as const);
  for (const engine of engines) {
    results[`checkpointer ${engine}`] = await best(engine === 'js' ? Math.min(runs, 2) : runs, () => {
      const c = new GzipCheckpointer({ spanSize: 4 << 20, engine });
      const sink = (): void => {};
      for (let p = 0; p < gz.length; p += CHUNK) c.write(gz.subarray(p, p + CHUNK), sink);
      c.end(rawSize);
    });
  }
  if (nativeEngineAvailable()) {
    const c = new GzipCheckpointer({ spanSize: 4 << 20, engine: 'native' });
    for (let p = 0; p < gz.length; p += CHUNK) c.write(gz.subarray(p, p + CHUNK), () => {});
    const r = c.end(rawSize);
    const spans = spansFromCheckpoints(r.checkpoints, r.spanDigests, gz.length, rawSize);
    const out = new Uint8Array(Math.max(...spans.map((x) => x.outEnd - x.outStart)));
    for (const [name, inflate] of Object.entries(nativeSpanInflaters())) {
      results[`span restore ${name}`] = await best(runs, () => {
        for (const x of spans) {
          const cp = r.checkpoints[x.id]!;
          const len = x.outEnd - x.outStart;
          if (inflate(gz.subarray(x.start, x.end), cp.bits, cp.window, out.subarray(0, len)) !== len) throw new Error(`span ${x.id}: short`);
        }
      });
    }
  }

  const base = results['zlib.gunzipSync']!;
  const rows = Object.entries(results).map(([name, s]) => ({ name, seconds: +s.toFixed(3), mbPerS: +((rawSize / 1e6) / s).toFixed(1), vsGunzipSync: +(base / s).toFixed(2) }));
  console.log(`input ${(gz.length / 1e6).toFixed(1)} MB gzip -> ${(rawSize / 1e6).toFixed(1)} MB; node ${process.version}; ${cpus()[0]?.model ?? '?'} x${cpus().length}; best of ${runs}`);
  console.table(rows);
  let commit = 'unknown';
  try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { /* not a checkout */ }
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/gzip-engine.json', import.meta.url), JSON.stringify({
    commit, date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cpus: cpus().length,
    compressedBytes: gz.length, uncompressedBytes: rawSize, runs, rows,
  }, null, 2) + '\n');
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
