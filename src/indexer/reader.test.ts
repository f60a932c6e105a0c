import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { EntryType, FileMetadata, Ztoc } from './types.js';
import { encodeZtoc } from './ztoc/index.js';
import { ZtocReader } from './reader.js';
import { tocVectorPosition } from './ztoc/toc-view.js';

const digest = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

function entry(name: string, over: Partial<FileMetadata> = {}): FileMetadata {
  return {
    name, type: 'reg', uncompressedOffset: 512, uncompressedSize: 0, linkname: '', mode: 0o644, uid: 0, gid: 0,
    uname: '', gname: '', modTime: '2023-11-14T22:13:20Z', devmajor: 0, devminor: 0, xattrs: [], ...over,
  };
}

/** A gzip zTOC around `toc`, with one (all-zero) checkpoint and one span. */
function gzipZtoc(toc: FileMetadata[]): Uint8Array {
  const size = 1 << 20;
  const z: Ztoc = {
    version: '0.9', buildToolIdentifier: 'test', compressedArchiveSize: size, uncompressedArchiveSize: size, toc,
    compressionAlgorithm: 'gzip', maxSpanId: 0, spanDigests: [digest('s0')], checkpoints: new Uint8Array(0),
  };
  const blob = new Uint8Array(12 + 32785);
  new DataView(blob.buffer).setInt32(0, 1, true);
  return encodeZtoc({ ...z, checkpoints: blob });
}

const copy = (e: FileMetadata): FileMetadata => ({
  name: e.name, type: e.type, uncompressedOffset: e.uncompressedOffset, uncompressedSize: e.uncompressedSize, linkname: e.linkname,
  mode: e.mode, uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname, modTime: e.modTime, devmajor: e.devmajor, devminor: e.devminor, xattrs: e.xattrs,
});

const types: EntryType[] = ['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];

function varied(n: number): FileMetadata[] {
  const out: FileMetadata[] = [];
  let off = 512;
  for (let i = 0; i < n; i++) {
    const type = types[i % types.length] as EntryType;
    const size = type === 'reg' ? (i * 37) % 2000 : 0;
    out.push(entry(i % 5 === 0 ? `./d${i % 3}/é-${i}` : `d${i % 3}/sub/f${i}`, {
      type, uncompressedOffset: off, uncompressedSize: size, linkname: type === 'symlink' || type === 'hardlink' ? `t${i}` : '',
      mode: (i * 7) % 0o7777, uid: i % 3 === 0 ? 0xffffffff : i, gid: i * 2, uname: i % 2 ? 'root' : '', gname: i % 4 ? 'ünï' : '',
      modTime: `2023-11-14T22:13:${String(i % 60).padStart(2, '0')}.${i}Z`, devmajor: type === 'char' ? 1 : 0, devminor: type === 'char' ? i : 0,
      xattrs: i % 3 === 0 ? [] : [['SCHILY.xattr.user.k', `v${i}`], ['atime', '1.5'], ['mtime', String(i)]],
    }));
    off += Math.ceil(size / 512) * 512 + 512;
  }
  return out;
}

describe('ZtocReader lazyToc', () => {
  test('checks and reads the same entries, in the same order, as the eager decode (sorted and unsorted)', () => {
    const sorted = varied(200);
    // Unsorted in the flatbuffer, with equal offsets (the sort must be stable).
    const shuffled = [...sorted].reverse();
    shuffled.push(entry('dup-a', { uncompressedOffset: 512 }), entry('dup-b', { uncompressedOffset: 512 }));
    for (const toc of [sorted, shuffled]) {
      const bytes = gzipZtoc(toc);
      const before = Buffer.from(bytes);
      const eager = ZtocReader.fromBytes(bytes);
      const lazy = ZtocReader.fromBytes(bytes, { lazyToc: true });
      assert.deepEqual(Buffer.from(bytes), before, 'the bytes are as they were');
      const viewed = [...lazy.entries()].length;
      assert.equal(viewed, eager.ztoc.toc.length);
      const seen: FileMetadata[] = [];
      for (const e of lazy.entries()) seen.push(copy(e));
      assert.deepEqual(seen, eager.ztoc.toc);
      // recordsWithPrefix decodes only the matching records
      let i = 0;
      for (const e of lazy.entries()) {
        const want = (eager.ztoc.toc[i++] as FileMetadata).xattrs.filter(([k]) => k.startsWith('SCHILY.xattr.'));
        assert.deepEqual((e as unknown as { recordsWithPrefix(p: string): unknown }).recordsWithPrefix('SCHILY.xattr.'), want);
      }
      const { toc: lazyToc, ...lazyRest } = lazy.ztoc;
      const { toc: eagerToc, ...eagerRest } = eager.ztoc;
      assert.deepEqual(lazyRest, eagerRest);
      assert.deepEqual(lazyToc, eagerToc, 'ztoc.toc decodes on demand');
      assert.deepEqual(lazy.spans, eager.spans);
      assert.equal(lazy.find('d1/sub/f1')?.name, 'd1/sub/f1');
    }
  });

  test('an empty TOC', () => {
    const lazy = ZtocReader.fromBytes(gzipZtoc([]), { lazyToc: true });
    assert.deepEqual([...lazy.entries()], []);
    assert.deepEqual(lazy.ztoc.toc, []);
  });

  test('rejects what decodeZtoc rejects, with ZTOC_INVALID', () => {
    const bad: Array<[string, Uint8Array]> = [];
    // an unknown entry type: patch the bytes of "fifo" into "fifx"
    const withFifo = gzipZtoc([entry('a', { type: 'fifo' })]);
    const at = Buffer.from(withFifo).indexOf('fifo');
    const t1 = Uint8Array.from(withFifo);
    t1[at + 3] = 0x78;
    bad.push(['unknown type', t1]);
    // header chain: data at 0 cannot follow a header
    bad.push(['header chain', gzipZtoc([entry('a', { uncompressedOffset: 512, uncompressedSize: 1024 }), entry('b', { uncompressedOffset: 1024 })])]);
    // a string length running past the end: the name's length prefix
    const t3 = Uint8Array.from(gzipZtoc([entry('some-name')]));
    const nameAt = Buffer.from(t3).indexOf('some-name');
    new DataView(t3.buffer).setUint32(nameAt - 4, 0x7fffffff, true);
    bad.push(['string bounds', t3]);
    // a vtable offset pointing outside
    const t4 = Uint8Array.from(gzipZtoc([entry('x')]));
    const vec = tocVectorPosition(t4);
    const elem = vec + 4 + new DataView(t4.buffer).getUint32(vec + 4, true);
    new DataView(t4.buffer).setInt32(elem, -0x100000, true);
    bad.push(['vtable', t4]);
    for (const [what, bytes] of bad) {
      const eagerErr = (() => { try { ZtocReader.fromBytes(Uint8Array.from(bytes)); return undefined; } catch (e) { return e as { code?: string }; } })();
      const lazyErr = (() => { try { ZtocReader.fromBytes(Uint8Array.from(bytes), { lazyToc: true }); return undefined; } catch (e) { return e as { code?: string }; } })();
      assert.equal(eagerErr?.code, 'ZTOC_INVALID', `${what}: eager`);
      assert.equal(lazyErr?.code, 'ZTOC_INVALID', `${what}: lazy`);
    }
  });
});
