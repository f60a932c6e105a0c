import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLayerTree, makedev, parseModTime, type LayerNode } from './layer-tree.js';
import type { FileMetadata } from '../../indexer/types.js';

function entry(name: string, over: Partial<FileMetadata> = {}): FileMetadata {
  return {
    name, type: 'reg', uncompressedOffset: 512, uncompressedSize: 0, linkname: '', mode: 0o644, uid: 0, gid: 0,
    uname: '', gname: '', modTime: '2023-11-14T22:13:20Z', devmajor: 0, devminor: 0, xattrs: [], ...over,
  };
}
const names = (n: LayerNode | undefined): string[] => [...(n?.children?.keys() ?? [])].sort();

test('names are cleaned, parents synthesized, escapes rejected', () => {
  const t = buildLayerTree([
    entry('./a/b/c.txt', { uncompressedSize: 5, uncompressedOffset: 1024 }),
    entry('/top'),
    entry('d/', { type: 'dir', mode: 0o700 }),
    entry('../evil'),
    entry('x/../../evil2'),
    entry('e//./f'),
  ]);
  assert.deepEqual(names(t.root), ['a', 'd', 'e', 'top']);
  const a = t.lookup('a');
  assert.equal(a?.kind, 'dir');
  assert.equal(a?.mode, 0o040755);
  const c = t.lookup('/a/b/c.txt');
  assert.equal(c?.size, 5);
  assert.equal(c?.offset, 1024);
  assert.equal(c?.mode, 0o100644);
  assert.equal(t.lookup('d')?.mode, 0o040700);
  assert.equal(t.lookup('e/f')?.kind, 'reg');
  assert.deepEqual(t.rejected.map((r) => r.name), ['../evil', 'x/../../evil2']);
  assert.equal(t.lookup('x'), undefined, 'a rejected entry creates no parent');
});

test('a later directory entry overwrites attributes and keeps children; nlink counts subdirs', () => {
  const t = buildLayerTree([
    entry('p/q/file'),
    entry('p/r/', { type: 'dir' }),
    entry('p/', { type: 'dir', mode: 0o4750 | 0o1000, uid: 7, gid: 8, modTime: '2001-02-03T04:05:06.123456789Z', xattrs: [['SCHILY.xattr.user.k', 'v'], ['mtime', '1']] }),
  ]);
  const p = t.lookup('p') as LayerNode;
  assert.deepEqual(names(p), ['q', 'r']);
  assert.equal(p.mode, 0o040000 | 0o5750);
  assert.equal(p.uid, 7);
  assert.equal(p.gid, 8);
  assert.equal(p.mtimeMs, Date.UTC(2001, 1, 3, 4, 5, 6, 123));
  assert.equal(p.mtimeNs, 123456789);
  assert.equal(p.nlink, 4);
  assert.deepEqual([...p.xattrs.keys()], ['user.k']);
  assert.equal(p.xattrs.get('user.k')?.toString(), 'v');
});

test('hard links share the inode; a missing or later target fails the tree', () => {
  const t = buildLayerTree([entry('f', { uncompressedSize: 3 }), entry('g/link', { type: 'hardlink', linkname: './f' })]);
  const f = t.lookup('f') as LayerNode;
  assert.equal(t.lookup('g/link'), f);
  assert.equal(f.nlink, 2);
  assert.throws(() => buildLayerTree([entry('l', { type: 'hardlink', linkname: 'f' }), entry('f')]), (e: { code?: string }) => e.code === 'CORRUPT_LAYER');
  assert.throws(() => buildLayerTree([entry('l', { type: 'hardlink', linkname: 'nowhere' })]), (e: { code?: string }) => e.code === 'CORRUPT_LAYER');
});

test('symlinks, devices, fifos', () => {
  const t = buildLayerTree([
    entry('s', { type: 'symlink', linkname: '../target', mode: 0o777 }),
    entry('c', { type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }),
    entry('b', { type: 'block', devmajor: 8, devminor: 300 }),
    entry('p', { type: 'fifo', mode: 0o600 }),
  ]);
  assert.equal(t.lookup('s')?.linkTarget, '../target');
  assert.equal(t.lookup('s')?.mode, 0o120777);
  assert.equal(t.lookup('s')?.size, 9);
  assert.equal(t.lookup('c')?.rdev, makedev(1, 3));
  assert.equal(makedev(1, 3), 0x103);
  assert.equal(t.lookup('b')?.rdev, (8 << 8) | (300 & 0xff) | ((300 & ~0xff) << 12));
  assert.equal(t.lookup('c')?.mode, 0o020666);
  assert.equal(t.lookup('p')?.mode, 0o010600);
});

test('whiteouts: char 0:0 unless a real entry exists; opaque marker hidden and sets the xattr', () => {
  const t = buildLayerTree([
    entry('d/.wh.gone'),
    entry('d/kept'),
    entry('d/.wh.kept'),
    entry('d/.wh.later'),
    entry('d/later'),
    entry('o/.wh..wh..opq'),
    entry('o/', { type: 'dir', xattrs: [['SCHILY.xattr.user.a', 'b']] }),
  ], { opaqueXattrs: ['trusted.overlay.opaque', 'user.overlay.opaque'] });
  assert.deepEqual(names(t.lookup('d')), ['gone', 'kept', 'later']);
  const gone = t.lookup('d/gone') as LayerNode;
  assert.equal(gone.whiteout, true);
  assert.equal(gone.mode, 0o020000);
  assert.equal(gone.rdev, 0);
  assert.equal(t.lookup('d/kept')?.kind, 'reg');
  assert.equal(t.lookup('d/later')?.kind, 'reg');
  assert.deepEqual(names(t.lookup('o')), []);
  const o = t.lookup('o') as LayerNode;
  assert.equal(o.xattrs.get('trusted.overlay.opaque')?.toString(), 'y');
  assert.equal(o.xattrs.get('user.overlay.opaque')?.toString(), 'y');
  assert.equal(o.xattrs.get('user.a')?.toString(), 'b');
  assert.equal(t.lookup('d')?.xattrs.size, 0);
  // replaced nodes leave the inode table
  assert.equal([...t.byIno.values()].filter((n) => n.whiteout).length, 1);
});

test('parseModTime', () => {
  assert.deepEqual(parseModTime('1970-01-01T00:00:01.5Z'), { ms: 1500, ns: 500000000 });
  assert.deepEqual(parseModTime(''), { ms: 0, ns: 0 });
  assert.deepEqual(parseModTime('2000-01-01T01:00:00+01:00'), { ms: Date.UTC(2000, 0, 1), ns: 0 });
});

test('the parent-directory shortcut builds the same tree as the walk from the root (any entry sequence)', async () => {
  const fc = (await import('fast-check')).default;
  const part = fc.constantFrom('a', 'b', '.wh.a', '.wh.b', '.wh..wh..opq', '.', '..');
  const name = fc.array(part, { minLength: 1, maxLength: 4 }).chain((ps) => fc.constantFrom(ps.join('/'), `${ps.join('/')}/`, `/${ps.join('/')}`, ps.join('//')));
  const ent = fc.record({ name, type: fc.constantFrom<FileMetadata['type']>('reg', 'dir', 'dir', 'symlink', 'hardlink'), link: name, mode: fc.integer({ min: 0, max: 0o7777 }) });
  // `./` before every other name: consecutive names never share a raw prefix, so the shortcut never applies.
  const outcome = (es: FileMetadata[]): unknown => {
    try {
      const t = buildLayerTree(es);
      return { nodes: [...t.byIno.values()].map((n) => ({ ...n, children: n.children && [...n.children].map(([k, c]) => [k, c.ino]), xattrs: [...n.xattrs] })), rejected: t.rejected.map((r) => r.reason) }; // (names differ by the spelling)
    } catch (e) {
      return { code: (e as { code?: string }).code };
    }
  };
  fc.assert(fc.property(fc.array(ent, { maxLength: 40 }), (list) => {
    const es = list.map((x, i) => entry(x.name, { type: x.type, linkname: x.type === 'hardlink' || x.type === 'symlink' ? x.link : '', mode: x.mode, uncompressedOffset: 512 * (i + 1) }));
    const spelled = es.map((e, i) => (i % 2 ? { ...e, name: `./${e.name}` } : e));
    assert.deepEqual(outcome(es), outcome(spelled));
  }), { numRuns: 2000 });
});
