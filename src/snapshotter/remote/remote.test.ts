import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { indexLayer, ZtocReader, type IndexedLayer, type RangeSource } from '../../indexer/index.js';
import { HttpRangeSource, SpanFetcher, SpanInflater } from './index.js';

function tarOf(data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write('f', 0); h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124); h.write('00000000000\0', 136);
  h.write('        ', 148); h.write('0', 156); h.write('ustar\0' + '00', 257);
  let sum = 0; for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad, Buffer.alloc(1024)]);
}

const content = randomBytes(200_000);
const blob = gzipSync(tarOf(content));
const layer = (await indexLayer((async function* () { yield blob; })(), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', spanSize: 32 * 1024 })) as IndexedLayer;
const reader = ZtocReader.fromBytes(layer.ztoc);
const fileOffset = reader.ztoc.toc[0]!.uncompressedOffset;

class CountingSource implements RangeSource {
  calls = 0;
  corrupt = 0;
  async read(start: number, end: number): Promise<Uint8Array> {
    this.calls++;
    await new Promise((r) => setTimeout(r, 5));
    const out = Uint8Array.from(blob.subarray(start, end));
    if (this.corrupt > 0) { this.corrupt--; out[0] = (out[0] ?? 0) ^ 1; }
    return out;
  }
}

test('concurrent reads of one span share a fetch; content is exact', async () => {
  const src = new CountingSource();
  const f = new SpanFetcher({ reader, source: src, layerDigest: layer.layerDigest });
  const [a, b] = await Promise.all([f.getSpan(1), f.getSpan(1)]);
  assert.equal(a, b);
  assert.equal(src.calls, 1);
  const all = await f.read(fileOffset, content.length);
  assert.ok(Buffer.from(all).equals(content));
  assert.equal(src.calls, reader.spans.filter((s) => s.outStart < fileOffset + content.length).length);
});

test('a digest mismatch is refetched once, then an error', async () => {
  const src = new CountingSource();
  src.corrupt = 1;
  const f = new SpanFetcher({ reader, source: src, layerDigest: layer.layerDigest });
  await f.getSpan(0);
  assert.equal(f.stats.digestMismatches, 1);
  src.corrupt = 2;
  await assert.rejects(f.getSpan(2), (e: { code?: string }) => e.code === 'CORRUPT_LAYER');
  assert.equal(src.calls, 4);
});

test('span file: the tar stream at its offsets, reused by a new fetcher once marks are persisted, bounded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spans-'));
  try {
    const src = new CountingSource();
    const f = new SpanFetcher({ reader, source: src, layerDigest: layer.layerDigest, cacheDir: dir, memorySpans: 1 });
    assert.ok(Buffer.from(await f.read(fileOffset, content.length)).equals(content));
    const fetched = src.calls;
    await f.close();
    const tar = gunzipSync(blob);
    const file = readFileSync(join(dir, `${layer.layerDigest.slice(7)}.tar`));
    for (const s of reader.spans) {
      if (s.outEnd <= fileOffset || s.outStart >= fileOffset + content.length) continue;
      assert.ok(file.subarray(s.outStart, s.outEnd).equals(tar.subarray(s.outStart, s.outEnd)), `span ${s.id} in the file`);
    }
    const g = new SpanFetcher({ reader, source: src, layerDigest: layer.layerDigest, cacheDir: dir });
    assert.ok(Buffer.from(await g.read(fileOffset, content.length)).equals(content));
    assert.equal(src.calls, fetched, 'served from the span file');
    await g.close();
    const span = reader.spans[1]!.outEnd - reader.spans[1]!.outStart;
    const small = new SpanFetcher({ reader, source: new CountingSource(), layerDigest: 'sha256:other', cacheDir: dir, maxDiskBytes: 2 * span + 100 });
    assert.ok(Buffer.from(await small.read(fileOffset, content.length)).equals(content));
    assert.ok(small.file!.bytes <= 2 * span + 100);
    assert.ok([...small.file!.present].filter((b) => b === 1).length <= 2);
    await small.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function server(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ srv: Server; url: string }> {
  const srv = createServer(handler);
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r({ srv, url: `http://127.0.0.1:${(srv.address() as { port: number }).port}/b` })));
}

test('HttpRangeSource: 206 accepted, 200 refused, 5xx retried, stall times out', async () => {
  let hits = 0;
  const { srv, url } = await server((req, res) => {
    hits++;
    const mode = req.url?.split('?')[1];
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    const a = Number(m?.[1]); const b = Number(m?.[2]);
    if (mode === 'full') return void res.writeHead(200).end(blob);
    if (mode === 'stall') return; // never answers
    if (mode === 'flaky' && hits % 2 === 1) return void res.writeHead(503).end();
    if (mode === 'wrongrange') return void res.writeHead(206, { 'content-range': `bytes ${a + 1}-${b}/${blob.length}` }).end(blob.subarray(a + 1, b + 1));
    res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${blob.length}` }).end(blob.subarray(a, b + 1));
  });
  try {
    const ok = await new HttpRangeSource(url).read(10, 1000);
    assert.ok(Buffer.from(ok).equals(blob.subarray(10, 1000)));
    await assert.rejects(new HttpRangeSource(`${url}?full`).read(10, 20), (e: { code?: string }) => e.code === 'RANGE_INVALID');
    await assert.rejects(new HttpRangeSource(`${url}?wrongrange`).read(10, 20), (e: { code?: string }) => e.code === 'RANGE_INVALID');
    hits = 0;
    const flaky = await new HttpRangeSource(`${url}?flaky`, { retries: 2, backoffMs: () => 10 }).read(0, 50);
    assert.ok(Buffer.from(flaky).equals(blob.subarray(0, 50)));
    assert.equal(hits, 2);
    const t0 = Date.now();
    await assert.rejects(new HttpRangeSource(`${url}?stall`, { timeoutMs: 300, retries: 1, backoffMs: () => 10 }).read(0, 50), (e: { code?: string }) => e.code === 'UNAVAILABLE');
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
});

test('with a SpanInflater (worker thread): exact content, batches, mismatches refetched then an error', async () => {
  const inflater = new SpanInflater();
  try {
    const src = new CountingSource();
    const f = new SpanFetcher({ reader, source: src, layerDigest: layer.layerDigest, inflater });
    await f.prefetch([1, 2, 3]);
    assert.equal(src.calls, 1, 'one range request for the batch');
    for (const id of [1, 2, 3]) assert.ok(f.peek(id) !== undefined, `span ${id} in memory after the batch`);
    const all = await f.read(fileOffset, content.length);
    assert.ok(Buffer.from(all).equals(content), 'every byte of the file');
    // The same spans inflated on this thread are identical, byte for byte.
    const plain = new SpanFetcher({ reader, source: new CountingSource(), layerDigest: layer.layerDigest });
    for (let id = 0; id < reader.spans.length; id++) assert.ok(Buffer.from(await f.getSpan(id)).equals(await plain.getSpan(id)), `span ${id}`);
    const bad = new CountingSource();
    bad.corrupt = 1;
    const g = new SpanFetcher({ reader, source: bad, layerDigest: layer.layerDigest, inflater });
    await g.getSpan(0);
    assert.equal(g.stats.digestMismatches, 1);
    bad.corrupt = 2;
    await assert.rejects(g.getSpan(2), (e: { code?: string }) => e.code === 'CORRUPT_LAYER');
    assert.equal(bad.calls, 4);
    // A corrupt span inside a batch is not stored; a later read refetches it alone and gets it right.
    bad.corrupt = 1;
    const before = bad.calls;
    await g.prefetch([3, 4]);
    assert.ok(Buffer.from(await g.getSpan(3)).equals(await plain.getSpan(3)));
    assert.ok(Buffer.from(await g.getSpan(4)).equals(await plain.getSpan(4)));
    assert.equal(bad.calls - before, 2, 'the batch, then span 3 alone');
  } finally {
    await inflater.close();
  }
});

test('SpanInflater pool: every span of a batch reported once as it lands, exact bytes; hurry; a closed pool rejects', async () => {
  const inflater = new SpanInflater({ threads: 2 });
  try {
    assert.equal(inflater.threads, 2);
    const n = reader.spans.length;
    assert.ok(n >= 5, `fixture has ${n} spans`);
    const first = reader.spans[0]!;
    const last = reader.spans[n - 1]!;
    const buf = Uint8Array.from(blob.subarray(first.start, last.end));
    const parts = reader.spans.map((s) => ({ id: s.id, from: s.start - first.start, to: s.end - first.start, digest: s.digest, length: s.outEnd - s.outStart }));
    const seen: number[] = [];
    const p = inflater.inflate(reader, () => reader.ztoc.checkpoints, buf, parts, undefined, (i, o) => {
      assert.ok(o.ok && o.data !== undefined, `span ${i} ok`);
      seen.push(i);
    });
    inflater.hurry(reader, n - 1); // queued (or already on a worker): either way it still lands exactly once
    const out = await p;
    assert.deepEqual([...seen].sort((a, b) => a - b), parts.map((_, i) => i), 'each span reported once, before the promise resolves');
    const plain = new SpanFetcher({ reader, source: new CountingSource(), layerDigest: layer.layerDigest });
    for (let i = 0; i < n; i++) {
      const o = out[i]!;
      assert.ok(o.ok && o.data !== undefined);
      assert.ok(Buffer.from(o.data).equals(await plain.getSpan(i)), `span ${i} bytes`);
    }
    // A span whose bytes do not match its digest is reported as such, the others still land.
    const bad = Uint8Array.from(blob.subarray(first.start, last.end));
    const at = parts[1]!.from;
    bad[at] = (bad[at] ?? 0) ^ 1;
    const res = await inflater.inflate(reader, () => reader.ztoc.checkpoints, bad, parts.slice(0, 3));
    assert.deepEqual(res.map((o) => (o.ok ? 'ok' : o.reason)), ['ok', 'digest', 'ok']);
  } finally {
    await inflater.close();
  }
  await assert.rejects(inflater.inflate(reader, () => reader.ztoc.checkpoints, new Uint8Array(1), [{ id: 0, from: 0, to: 1, digest: 'sha256:00', length: 1 }]));
});

test('span file marks: gathered, persisted only after the delay or at flush, and reloaded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'span-marks-'));
  try {
    // A delay no test run reaches, so "not yet on disk" cannot depend on the machine's speed.
    const opts = { reader, source: new CountingSource(), layerDigest: layer.layerDigest, cacheDir: dir, persistDelayMs: 600_000 };
    const f = new SpanFetcher(opts);
    const file = f.file!;
    const marks = (): number[] => [...readFileSync(file.presentPath).subarray(16)];
    await f.ensure(0, 2);
    assert.deepEqual([file.present[0], file.present[1], file.present[2]], [1, 1, 1], 'present in memory at once');
    assert.deepEqual(marks().slice(0, 3), [0, 0, 0], 'not on disk yet (the delay gathers marks)');
    await file.flush();
    assert.deepEqual(marks().slice(0, 3), [1, 1, 1], 'flush persists them at once');
    await f.ensure(3, 3);
    await f.close();
    assert.equal(marks()[3], 1, 'close persists the rest');
    const g = new SpanFetcher(opts);
    assert.deepEqual([...g.file!.present].slice(0, 4), [1, 1, 1, 1], 'reloaded');
    await g.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
