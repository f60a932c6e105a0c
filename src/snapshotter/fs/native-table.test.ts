import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { EntryType, FileMetadata } from '../../indexer/types.js';
import { ZtocReader } from '../../indexer/reader.js';
import type { TocView } from '../../indexer/ztoc/toc-view.js';
import { buildLayerTree } from './layer-tree.js';
import { serializeTree, type NativeTable } from './native-fs.js';
import { buildNativeTable } from './native-table.js';
import { assertSameTable, ztocBytes } from './testing/tables.js';

function view(bytes: Uint8Array): { reader: ZtocReader; view: TocView } {
  const reader = ZtocReader.fromBytes(bytes, { lazyToc: true });
  const v = reader.tocView();
  assert.ok(v !== undefined, 'lazyToc gives a view');
  return { reader, view: v };
}

type Outcome = { table: NativeTable } | { error: string } | { fallback: true };

const oracle = (reader: ZtocReader): Outcome => {
  try {
    return { table: serializeTree(buildLayerTree(reader.entries())) };
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  }
};
const fast = (v: TocView): Outcome => {
  try {
    const table = buildNativeTable(v);
    return table === undefined ? { fallback: true } : { table };
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  }
};

function assertSame(got: Outcome, want: Outcome, what: string): void {
  if ('table' in want && 'table' in got) {
    assertSameTable(got.table, want.table, what);
    return;
  }
  assert.deepEqual(got, want, what);
}

const TYPES: EntryType[] = ['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const COMPONENTS = ['a', 'b', 'c', 'dir', '.', '..', '', '.wh.a', '.wh.b', '.wh.dir', '.wh..wh..opq', '.wh.', '.wh..', 'é', '日本', '.wh.é'];
const TIMES = ['2023-11-14T22:13:20Z', '2023-11-14T22:13:20.25Z', '2001-02-03T04:05:06.123456789+02:00', '', 'garbage', '1969-12-31T23:59:59.5Z'];

const nameArb = fc.tuple(
  fc.constantFrom('', './', '/', './/'),
  fc.array(fc.constantFrom(...COMPONENTS), { minLength: 0, maxLength: 4 }),
  fc.constantFrom('', '', '/', '//'),
).map(([lead, parts, trail]) => lead + parts.join('/') + trail);

const entryArb = fc.record({
  name: nameArb,
  type: fc.constantFrom<EntryType>(...TYPES, 'reg', 'dir', 'hardlink'),
  size: fc.nat(20_000),
  linkname: fc.oneof(nameArb, fc.constantFrom('a', 'a/b', 'dir/c', './b', 'x/y/z', '')),
  mode: fc.nat(0o177777),
  uid: fc.constantFrom<number>(0, 1000, 0xffffffff),
  gid: fc.nat(70000),
  modTime: fc.constantFrom(...TIMES),
  devmajor: fc.nat(5000),
  devminor: fc.nat(300000),
  xattrs: fc.subarray([['SCHILY.xattr.', 'e'], ['SCHILY.xattr.security.capability', 'cap'], ['SCHILY.xattr.trusted.overlay.opaque', 'x'], ['SCHILY.xattr.user.ü', 'wert'], ['mtime', '1.5']] as Array<[string, string]>),
});

function tocOf(raw: Array<typeof entryArb extends fc.Arbitrary<infer T> ? T : never>): FileMetadata[] {
  let off = 512;
  return raw.map((r) => {
    const size = r.type === 'reg' ? r.size : 0;
    const e: FileMetadata = {
      name: r.name, type: r.type, uncompressedOffset: off, uncompressedSize: size, linkname: r.type === 'symlink' || r.type === 'hardlink' ? r.linkname : '',
      mode: r.mode, uid: r.uid, gid: r.gid, uname: '', gname: '', modTime: r.modTime, devmajor: r.devmajor, devminor: r.devminor, xattrs: r.xattrs,
    };
    off += Math.ceil(size / 512) * 512 + 512;
    return e;
  });
}

test('property: the table built from the TOC view is byte for byte serializeTree(buildLayerTree(...))', () => {
  let tables = 0;
  let errors = 0;
  fc.assert(fc.property(fc.array(entryArb, { minLength: 0, maxLength: 60 }), (raw) => {
    const { reader, view: v } = view(ztocBytes(tocOf(raw)));
    const want = oracle(reader);
    const got = fast(v);
    if ('table' in want) tables++;
    else errors++;
    assertSame(got, want, 'generated toc');
  }), { numRuns: 1500 });
  // Both outcomes must have been exercised, or the property says little.
  assert.ok(tables > 300 && errors > 50, `tables ${tables}, CorruptLayer ${errors}`);
});

test('hard links to earlier entries, in and out of replaced directories; dirs re-declared; whiteouts over entries', () => {
  const toc = tocOf([
    { name: './d/f', type: 'reg', size: 10, linkname: '', mode: 0o644, uid: 1, gid: 2, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'e/g', type: 'hardlink', size: 0, linkname: 'd/f', mode: 0o644, uid: 1, gid: 2, modTime: TIMES[1] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'd/h', type: 'hardlink', size: 0, linkname: './d/f', mode: 0o644, uid: 1, gid: 2, modTime: TIMES[1] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'd/', type: 'dir', size: 0, linkname: '', mode: 0o700, uid: 3, gid: 4, modTime: TIMES[2] as string, devmajor: 0, devminor: 0, xattrs: [['SCHILY.xattr.user.a', 'b']] },
    { name: 'd', type: 'reg', size: 1, linkname: '', mode: 0o600, uid: 3, gid: 4, modTime: TIMES[2] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'e/.wh.g', type: 'reg', size: 0, linkname: '', mode: 0, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'e/.wh.k', type: 'reg', size: 0, linkname: '', mode: 0, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'e/k/l', type: 'symlink', size: 0, linkname: '../g', mode: 0o777, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'e/.wh..wh..opq', type: 'reg', size: 0, linkname: '', mode: 0, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name: 'cdev', type: 'char', size: 0, linkname: '', mode: 0o620, uid: 0, gid: 5, modTime: TIMES[3] as string, devmajor: 4, devminor: 1025, xattrs: [] },
    { name: './', type: 'dir', size: 0, linkname: '', mode: 0o711, uid: 9, gid: 9, modTime: TIMES[5] as string, devmajor: 0, devminor: 0, xattrs: [] },
  ]);
  const { reader, view: v } = view(ztocBytes(toc));
  const want = oracle(reader);
  assert.ok('table' in want);
  assertSame(fast(v), want, 'hand-written toc');
});

test('names or link targets that do not round-trip through the decoder fall back (undefined)', () => {
  const base = (name: string, linkname = ''): FileMetadata[] => tocOf([
    { name: 'ok', type: 'reg', size: 0, linkname: '', mode: 0o644, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
    { name, type: linkname === '' ? 'reg' : 'symlink', size: 0, linkname, mode: 0o644, uid: 0, gid: 0, modTime: TIMES[0] as string, devmajor: 0, devminor: 0, xattrs: [] },
  ]);
  assert.equal(buildNativeTable(view(ztocBytes(base('\uFEFFbom'))).view), undefined, 'a leading BOM is stripped by the decoder');
  assert.equal(buildNativeTable(view(ztocBytes(base('s', '\uFEFFt'))).view), undefined, 'symlink target with a BOM');
  assert.ok(buildNativeTable(view(ztocBytes(base('a\uFEFFb'))).view) !== undefined, 'a BOM inside a name is kept by both');
  // Invalid UTF-8: the decoder makes U+FFFD of it.
  const bytes = ztocBytes(base('QQQQinvalid'));
  const at = Buffer.from(bytes).indexOf('QQQQinvalid');
  assert.ok(at > 0);
  bytes[at] = 0xff;
  assert.equal(buildNativeTable(view(bytes).view), undefined, 'invalid UTF-8');
  bytes[at] = 0xc3;
  bytes[at + 1] = 0xa9; // valid again: é
  const { reader, view: v } = view(bytes);
  assertSame(fast(v), oracle(reader), 'valid two-byte sequence patched in');
});
