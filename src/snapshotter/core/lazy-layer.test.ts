import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { indexLayer, ZtocReader, type IndexedLayer } from '../../indexer/index.js';
import { HttpRangeSource, SpanInflater } from '../remote/index.js';
import { LazyLayer, type LazyLayerOptions } from './lazy-layer.js';
import { SnapshotterMetrics } from './metrics.js';

function entry(name: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0); h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124); h.write('00000000000\0', 136);
  h.write('        ', 148); h.write('0', 156); h.write('ustar\0' + '00', 257);
  let sum = 0; for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

// ~1 MiB of tar (half the files random, half text) in 32 KiB (compressed) spans: about 30 spans.
const files = Array.from({ length: 12 }, (_, i) => entry(`f${i}`, i % 2 === 0 ? randomBytes(150_000 + i * 1000) : Buffer.from(`line ${i}\n`.repeat(20_000))));
const tar = Buffer.concat([...files, Buffer.alloc(1024)]);
const blob = gzipSync(tar);
const layer = (await indexLayer((async function* () { yield blob; })(), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', spanSize: 32 * 1024 })) as IndexedLayer;
const reader = ZtocReader.fromBytes(layer.ztoc);
const N = reader.spans.length;
const plain = gunzipSync(blob);

/** A blob server counting range requests by start offset; `corrupt` flips a byte of the next answers. */
const hits: number[] = [];
let corrupt = 0;
const srv = createServer((req, res) => {
  const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
  const a = Number(m?.[1]); const b = Number(m?.[2]);
  hits.push(a);
  const body = Buffer.from(blob.subarray(a, b + 1));
  if (corrupt > 0) { corrupt--; body[0] = (body[0] ?? 0) ^ 1; }
  res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${blob.length}`, 'content-length': body.length }).end(body);
});
await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/blob`;
const inflater = new SpanInflater();
const root = mkdtempSync(join(tmpdir(), 'lazy-layer-'));
after(async () => {
  await inflater.close();
  srv.closeAllConnections();
  await new Promise((r) => srv.close(r));
  rmSync(root, { recursive: true, force: true });
});

let dirs = 0;
function lazy(dir: string, extra: Partial<LazyLayerOptions> = {}): LazyLayer {
  return new LazyLayer({
    layerDigest: layer.layerDigest, reader, source: new HttpRangeSource(url, { retries: 0 }), metrics: new SnapshotterMetrics(),
    spanCacheDir: dir, bgFetchPeriodMs: 0, scanSpans: 0, inflater, ...extra,
  });
}
const freshDir = (): string => join(root, `d${dirs++}`);
const tarPath = (dir: string): string => join(dir, `${layer.layerDigest.slice(7)}.tar`);

function assertFileMatches(l: LazyLayer, what: string): void {
  const f = l.contentFile!;
  const file = readFileSync(f.path);
  assert.equal(f.spanStarts.length, N + 1);
  assert.equal(f.spanStarts[N], plain.length);
  for (let i = 0; i < N; i++) {
    assert.equal(f.present[i], 1, `${what}: span ${i} present`);
    const [s, e] = [f.spanStarts[i]!, f.spanStarts[i + 1]!];
    assert.ok(file.subarray(s, e).equals(plain.subarray(s, e)), `${what}: span ${i} bytes`);
  }
}

test('ensure fills the sparse file with the exact tar bytes of every span; presence is reused by a new layer', async () => {
  assert.ok(N >= 16, `fixture has ${N} spans`);
  const dir = freshDir();
  const a = lazy(dir);
  assert.equal(a.contentFile!.present.buffer instanceof SharedArrayBuffer, true);
  hits.length = 0;
  for (let i = 0; i < N; i += 3) await a.contentFile!.ensure(i, Math.min(N - 1, i + 2));
  assertFileMatches(a, 'first layer');
  assert.ok(hits.length > 0);
  await a.close();
  hits.length = 0;
  const b = lazy(dir);
  assertFileMatches(b, 'reopened');
  await b.contentFile!.ensure(0, N - 1);
  const all = await b.read(0, plain.length);
  assert.ok(Buffer.from(all).equals(plain), 'read() of the whole stream');
  assert.equal(hits.length, 0, 'no request: every span reused');
  await b.close();
});

test('a span with a bad byte in the file and no mark is refetched; reads are exact', async () => {
  const dir = freshDir();
  const a = lazy(dir);
  await a.contentFile!.ensure(0, N - 1);
  await a.close();
  const k = 5;
  const at = reader.spans[k]!.outStart + 100;
  const fd = openSync(tarPath(dir), 'r+');
  writeSync(fd, Uint8Array.of(plain[at]! ^ 0xff), 0, 1, at);
  closeSync(fd);
  const pfd = openSync(join(dir, `${layer.layerDigest.slice(7)}.present`), 'r+');
  writeSync(pfd, Uint8Array.of(0), 0, 1, 16 + k);
  closeSync(pfd);
  hits.length = 0;
  const b = lazy(dir);
  assert.equal(b.contentFile!.present[k], 0);
  const got = await b.read(at - 10, 20);
  assert.ok(Buffer.from(got).equals(plain.subarray(at - 10, at + 10)));
  assert.deepEqual(hits, [reader.spans[k]!.start], 'only span k fetched');
  assertFileMatches(b, 'after refetch');
  await b.close();
});

test('eviction keeps the bound, punches holes, and an evicted span reads back exactly', async () => {
  const dir = freshDir();
  const span = Math.max(...reader.spans.slice(0, -1).map((s) => s.outEnd - s.outStart));
  const max = 4 * span;
  const a = lazy(dir, { maxDiskBytes: max });
  const file = a.fetcher.file!;
  for (let i = 0; i < N; i++) {
    await a.contentFile!.ensure(i, i);
    assert.equal(a.contentFile!.present[i], 1, `span ${i} present after ensure`);
    assert.ok(file.bytes <= max, `bound after span ${i}`);
    const st = a.contentFile!.spanStarts;
    const kept = [...a.contentFile!.present].reduce((sum, p, j) => sum + (p === 1 ? st[j + 1]! - st[j]! : 0), 0);
    assert.ok(kept <= max, `present spans hold ${kept} bytes, bound ${max}`);
  }
  assert.ok(file.evictions > 0 && plain.length > 2 * max, `${file.evictions} evictions`);
  await file.close().catch(() => undefined); // waits for the punches (the layer closes it again below)
  const allocated = statSync(tarPath(dir)).blocks * 512;
  // Holes are whole 4 KiB blocks: each evicted span may keep a partial block at either end.
  assert.ok(allocated <= max + N * 8192, `allocated ${allocated} bytes, bound ${max}`);
  await a.close();
  const b = lazy(dir, { maxDiskBytes: max });
  hits.length = 0;
  const got = await b.read(reader.spans[0]!.outStart, reader.spans[2]!.outEnd);
  assert.ok(Buffer.from(got).equals(plain.subarray(0, reader.spans[2]!.outEnd)), 'evicted spans read back');
  assert.equal(hits.length, 3);
  await b.close();
});

test('ensure() and read() under concurrency fetch each span once; failures propagate and mark nothing', async () => {
  const dir = freshDir();
  const a = lazy(dir);
  hits.length = 0;
  const s = reader.spans[7]!;
  await Promise.all([
    ...Array.from({ length: 10 }, () => a.contentFile!.ensure(7, 7)),
    a.read(s.outStart + 10, 1000),
    a.read(s.outStart, s.outEnd - s.outStart),
  ]);
  assert.equal(hits.filter((h) => h === s.start).length, 1, 'span 7 fetched once');
  assert.ok(Buffer.from(await a.read(s.outStart, s.outEnd - s.outStart)).equals(plain.subarray(s.outStart, s.outEnd)));
  corrupt = 2;
  await assert.rejects(a.contentFile!.ensure(9, 9), (e: { code?: string }) => e.code === 'CORRUPT_LAYER');
  assert.equal(a.contentFile!.present[9], 0, 'nothing unverified marked');
  corrupt = 1;
  await a.contentFile!.ensure(9, 9);
  assert.equal(a.fetcher.stats.digestMismatches, 3);
  assertFileMatchesSpan(a, 9);
  await a.close();
});

function assertFileMatchesSpan(l: LazyLayer, i: number): void {
  const f = l.contentFile!;
  const [s, e] = [f.spanStarts[i]!, f.spanStarts[i + 1]!];
  assert.equal(f.present[i], 1);
  assert.ok(readFileSync(f.path).subarray(s, e).equals(plain.subarray(s, e)));
}

test('misses continuing a forward stream read ahead (native path: ensure only)', async () => {
  const dir = freshDir();
  const m = new SnapshotterMetrics();
  const a = lazy(dir, { metrics: m });
  await a.contentFile!.ensure(0, 0);
  assert.equal(m.stats.spans.prefetch.count, 0, 'a first miss alone reads nothing ahead');
  await a.contentFile!.ensure(1, 1);
  await waitFor(() => a.contentFile!.present.subarray(2, 18).every((p) => p === 1));
  assert.ok(m.stats.spans.prefetch.count >= 2 && m.stats.spans.prefetch.count <= 3, `batched: ${m.stats.spans.prefetch.count} requests`);
  await a.close();
});

test('bulk fill after a scan: the rest of the layer arrives in batches, then background-done', async () => {
  const dir = freshDir();
  const m = new SnapshotterMetrics();
  let done = 0;
  const orig = m.emit.bind(m);
  m.emit = (e) => { if (e.type === 'background-done') done++; orig(e); };
  const a = lazy(dir, { metrics: m, scanSpans: 4 });
  hits.length = 0;
  // Scattered reads (no forward stream): 4 distinct spans within the window start the bulk fill.
  for (const i of [3, 9, 14, 6]) {
    const s = reader.spans[i]!;
    assert.ok(Buffer.from(await a.read(s.outStart + 5, 50)).equals(plain.subarray(s.outStart + 5, s.outStart + 55)));
  }
  await waitFor(() => done === 1);
  await a.settled();
  assertFileMatches(a, 'after bulk fill');
  assert.ok(m.stats.spans.background.count > 0 && m.stats.spans.background.count <= Math.ceil((N - 4) / 8) + 3, `${m.stats.spans.background.count} bulk requests`);
  assert.equal(hits.length, new Set(hits).size, 'no span fetched twice');
  await a.close();
});

async function waitFor(ok: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
