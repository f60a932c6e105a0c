import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { FileMetadata } from '../../indexer/types.js';
import { ZtocReader } from '../../indexer/reader.js';
import type { TocView } from '../../indexer/ztoc/toc-view.js';
import type { NativeTable } from './native-fs.js';
import { buildNativeTable } from './native-table.js';
import { NativeTableWorker, type NativeTableTimings } from './native-table-worker.js';
import { assertSameTable as sameBytes, ztocBytes } from './testing/tables.js';

const viewOf = (bytes: Uint8Array): TocView => {
  const v = ZtocReader.fromBytes(bytes, { lazyToc: true }).tocView();
  assert.ok(v !== undefined);
  return v;
};

type Raw = Partial<FileMetadata> & Pick<FileMetadata, 'name' | 'type'>;

/** Entries at increasing offsets; defaults for what `raw` leaves out. */
function tocOf(raw: Raw[]): FileMetadata[] {
  let off = 512;
  return raw.map((r) => {
    const size = r.type === 'reg' ? (r.uncompressedSize ?? 0) : 0;
    const e: FileMetadata = {
      linkname: '', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', modTime: '2023-11-14T22:13:20Z', devmajor: 0, devminor: 0, xattrs: [],
      ...r, uncompressedOffset: off, uncompressedSize: size,
    };
    off += Math.ceil(size / 512) * 512 + 512;
    return e;
  });
}

/** A layer-like TOC of `n` entries with every kind of node, whiteouts, hard links, xattrs and odd names. */
function bigToc(n: number): FileMetadata[] {
  const raw: Raw[] = [];
  for (let i = 0; raw.length < n; i++) {
    const d = `usr/share/d${i % 97}/s${i % 13}`;
    raw.push({ name: `${d}/`, type: 'dir', mode: 0o755 + (i % 3) });
    raw.push({ name: `${d}/f${i}.txt`, type: 'reg', uncompressedSize: (i * 7919) % 20000, uid: i % 5, gid: 1000 + (i % 3), modTime: `2023-11-14T22:13:${String(i % 60).padStart(2, '0')}.${i % 1000}Z` });
    if (i % 5 === 0) raw.push({ name: `${d}/l${i}`, type: 'symlink', linkname: `f${i}.txt` });
    if (i % 7 === 0) raw.push({ name: `${d}/h${i}`, type: 'hardlink', linkname: `${d}/f${i}.txt` });
    if (i % 11 === 0) raw.push({ name: `${d}/x${i}`, type: 'reg', xattrs: [['SCHILY.xattr.user.n', `v${i}`], ['SCHILY.xattr.security.capability', 'cap']] });
    if (i % 13 === 0) raw.push({ name: `${d}/.wh.f${i - 13}.txt`, type: 'reg' });
    if (i % 17 === 0) raw.push({ name: `${d}/c${i}`, type: 'char', devmajor: 4, devminor: i });
    if (i % 19 === 0) raw.push({ name: `${d}/日本-é${i}`, type: 'fifo' });
    if (i % 23 === 0) raw.push({ name: `usr/share/d${i % 97}/.wh..wh..opq`, type: 'reg' });
  }
  return tocOf(raw.slice(0, n));
}

function assertSameTable(got: NativeTable | undefined, want: NativeTable | undefined, what: string): void {
  assert.ok(got !== undefined && want !== undefined, `${what}: both build a table`);
  sameBytes(got, want, what, { sameTypes: true });
}

test('a big table built on the worker is byte for byte the inline one, and the zTOC bytes stay usable', async () => {
  const seen: NativeTableTimings[] = [];
  const w = new NativeTableWorker({ onBuilt: (t) => seen.push(t) });
  try {
    const bytes = ztocBytes(bigToc(6000));
    const before = Buffer.from(bytes);
    const view = viewOf(bytes);
    assert.ok(view.length > w.minEntries);
    const want = buildNativeTable(view);
    const got = await w.build(view);
    assertSameTable(got, want, 'worker vs inline');
    assert.ok(Buffer.from(bytes).equals(before), 'the caller\'s zTOC bytes are untouched');
    assertSameTable(buildNativeTable(view), want, 'inline again after the worker build'); // the view still reads them
    assert.deepEqual(seen.map((t) => t.where), ['worker']);
    // Two at once (two big layers mounting together) each get their own table.
    const other = viewOf(ztocBytes(bigToc(4000)));
    const [a, b] = await Promise.all([w.build(view), w.build(other)]);
    assertSameTable(a, want, 'first of two');
    assertSameTable(b, buildNativeTable(other), 'second of two');
  } finally {
    await w.close();
  }
});

test('a small table is built inline, without starting the worker', async () => {
  const seen: NativeTableTimings[] = [];
  const w = new NativeTableWorker({ onBuilt: (t) => seen.push(t) });
  const view = viewOf(ztocBytes(bigToc(500)));
  assertSameTable(await w.build(view), buildNativeTable(view), 'small');
  assert.deepEqual(seen.map((t) => t.where), ['inline']);
  await w.close();
});

test('a name the tree must decode comes back undefined from the worker', async () => {
  const w = new NativeTableWorker({ minEntries: 10 });
  try {
    const toc = bigToc(100);
    toc.push(...tocOf([{ name: '\uFEFFbom', type: 'reg' }]).map((e) => ({ ...e, uncompressedOffset: 1e9 })));
    const view = viewOf(ztocBytes(toc));
    assert.equal(buildNativeTable(view), undefined, 'inline: undefined');
    assert.equal(await w.build(view), undefined, 'worker: undefined');
  } finally {
    await w.close();
  }
});

test('a CorruptLayer on the worker is the same CorruptLayer here', async () => {
  const w = new NativeTableWorker({ minEntries: 10 });
  try {
    const toc = bigToc(100);
    toc.push(...tocOf([{ name: 'broken', type: 'hardlink', linkname: 'no/such/file' }]).map((e) => ({ ...e, uncompressedOffset: 1e9 })));
    const view = viewOf(ztocBytes(toc));
    let want: unknown;
    assert.throws(() => buildNativeTable(view), (err) => ((want = err), true));
    const w1 = want as { code: string; name: string; message: string; offset: number; where: string };
    assert.equal(w1.code, 'CORRUPT_LAYER');
    await assert.rejects(w.build(view), (err: unknown) => {
      const e = err as typeof w1;
      assert.ok(err instanceof Error);
      assert.deepEqual({ code: e.code, name: e.name, message: e.message, offset: e.offset, where: e.where }, { code: w1.code, name: w1.name, message: w1.message, offset: w1.offset, where: w1.where });
      return true;
    });
    // The worker is still serving after an error.
    const ok = viewOf(ztocBytes(bigToc(50)));
    assertSameTable(await w.build(ok), buildNativeTable(ok), 'after an error');
  } finally {
    await w.close();
  }
});

test('with the worker gone, builds fall back to inline with the same result', async () => {
  const seen: NativeTableTimings[] = [];
  const w = new NativeTableWorker({ minEntries: 10, onBuilt: (t) => seen.push(t) });
  const view = viewOf(ztocBytes(bigToc(300)));
  const want = buildNativeTable(view);
  w.warm();
  const pending = w.build(view);
  await w.close(); // the build under way finishes inline
  assertSameTable(await pending, want, 'under way at close');
  assertSameTable(await w.build(view), want, 'after close');
  assert.deepEqual(seen.map((t) => t.where), ['inline', 'inline']);
});

test('fetchZtoc: verified bytes, the check and the table from the worker; wrong digest, wrong size, 401 and a bad TOC', async () => {
  const { createServer } = await import('node:http');
  const good = ztocBytes(bigToc(6000));
  const bad = Uint8Array.from(good);
  // A TOC that fails the check: the first entry's name offset pointed far past the buffer.
  const badView = new DataView(bad.buffer);
  const rootOff = badView.getUint32(0, true);
  badView.setUint32(rootOff, 0x7fffffff, true); // the root table's vtable offset: scanToc must refuse it
  const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const server = createServer((req, res) => {
    if (req.url === '/good') res.writeHead(200, { 'content-length': String(good.length) }).end(Buffer.from(good));
    else if (req.url === '/bad') res.writeHead(200, { 'content-length': String(bad.length) }).end(Buffer.from(bad));
    else res.writeHead(401).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const w = new NativeTableWorker();
  const req = (path: string, digest: string, size: number) => ({ url: `${base}${path}`, headers: {}, digest, size, timeoutMs: 10_000, table: true });
  try {
    const got = await w.fetchZtoc(req('/good', sha(good), good.length));
    assert.ok(got, 'the worker is available');
    assert.ok(Buffer.from(got.bytes).equals(Buffer.from(good)), 'the bytes');
    assert.equal(got.checked, true);
    assertSameTable(await got.table, buildNativeTable(viewOf(good)), 'fetched table vs inline');
    await assert.rejects(w.fetchZtoc(req('/good', sha(bad), good.length))!, (e: { code?: string }) => e.code === 'DIGEST_INVALID');
    await assert.rejects(w.fetchZtoc(req('/good', sha(good), good.length + 1))!, (e: { code?: string }) => e.code === 'SIZE_INVALID');
    await assert.rejects(w.fetchZtoc(req('/private', sha(good), good.length))!, (e: { fallback?: boolean }) => e.fallback === true);
    const unchecked = await w.fetchZtoc(req('/bad', sha(bad), bad.length));
    assert.equal(unchecked?.checked, false, 'a TOC that fails the check comes back unchecked (the main thread reports the error)');
    assert.throws(() => ZtocReader.fromBytes(unchecked!.bytes, { lazyToc: true }));
  } finally {
    await w.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
