import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { EntryType, FileMetadata, Ztoc } from '../types.js';
import { alignToTarBlock, decodeZtoc, encodeZtoc, tarHeaderOffsets } from './codec.js';
import { decodeTarZinfo, encodeTarZinfo, tarMaxSpanId, tarSpanRange } from './tar-zinfo.js';

const hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const digest = (s: string): string => `sha256:${hex(Buffer.from(s))}`;

function entry(over: Partial<FileMetadata>): FileMetadata {
  return {
    name: 'f',
    type: 'reg',
    uncompressedOffset: 512,
    uncompressedSize: 0,
    linkname: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    modTime: '2023-11-14T22:13:20Z',
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...over,
  };
}

function gzipBlob(n: number): Uint8Array {
  const b = new Uint8Array(12 + 32785 * n);
  new DataView(b.buffer).setInt32(0, n, true);
  b.fill(7, 12);
  return b;
}

function sample(): Ztoc {
  return {
    version: '0.9',
    buildToolIdentifier: 'AWS SOCI CLI v0.2',
    compressedArchiveSize: 2 ** 40 + 3,
    uncompressedArchiveSize: 2 ** 52 + 1,
    toc: [
      entry({ name: './', type: 'dir', uncompressedOffset: 512, mode: 0o755, uname: 'root', gname: 'root' }),
      entry({
        name: 'dir/\u00fcnicode-\u{1f600}.txt',
        uncompressedOffset: 2048,
        uncompressedSize: 2 ** 33,
        uid: 2 ** 32 - 1,
        gid: 2 ** 31,
        uname: 'ü',
        modTime: '2023-11-14T22:13:20.25Z',
        xattrs: [
          ['SCHILY.xattr.user.b', 'v\u0000b'],
          ['SCHILY.xattr.security.capability', '\u0001\u0002'],
          ['path', 'dir/\u00fcnicode-\u{1f600}.txt'],
          ['LIBARCHIVE.creationtime', '1'],
        ],
      }),
      entry({ name: 'link', type: 'symlink', linkname: 'dir', uncompressedOffset: 2 ** 33 + 2048 + 512, mode: 0o777 }),
      entry({ name: 'dev', type: 'char', uncompressedOffset: 2 ** 33 + 4096, devmajor: 2 ** 40, devminor: 7, mode: 0o20666 }),
    ],
    compressionAlgorithm: 'gzip',
    maxSpanId: 2,
    spanDigests: [digest('a'), digest('b'), digest('c')],
    checkpoints: gzipBlob(3),
  };
}

describe('zTOC codec', () => {
  test("golden vector of soci's TestWriteZtoc: 65928 bytes, sha256:eba28fdf…c7ec", () => {
    const zero = entry({ name: '', type: '' as EntryType, uncompressedOffset: 0, mode: 0, modTime: '0001-01-01T00:00:00Z' });
    const bytes = encodeZtoc({
      version: '0.9',
      buildToolIdentifier: 'AWS SOCI CLI',
      compressedArchiveSize: 2000000,
      uncompressedArchiveSize: 2500000,
      toc: [zero, { ...zero }],
      compressionAlgorithm: 'gzip',
      maxSpanId: 3,
      spanDigests: [],
      checkpoints: new Uint8Array(1 << 16),
    });
    assert.equal(bytes.length, 65928);
    assert.equal(hex(bytes), 'eba28fdf50b1b57543f57dd051b2468c1d4f57b64d2006c75aa4de1d03e6c7ec');
  });

  test('round trip: xattrs sorted, unicode, uid/gid ≥ 2^31, int64 values above 2^32', () => {
    const z = sample();
    const back = decodeZtoc(encodeZtoc(z));
    const expected = structuredClone(z);
    (expected.toc[1] as FileMetadata).xattrs.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
    assert.deepEqual(back, expected);
    assert.deepEqual(encodeZtoc(back), encodeZtoc(z));
  });

  test('uncompressed zTOC with TarZinfo round-trips; algorithm 2 is written, gzip (default) is not', () => {
    const size = 10 * 1024 * 1024 + 1;
    const z: Ztoc = {
      ...sample(),
      compressionAlgorithm: 'uncompressed',
      maxSpanId: tarMaxSpanId(size, 4 << 20),
      checkpoints: encodeTarZinfo({ spanSize: 4 << 20, size }),
    };
    assert.deepEqual(decodeZtoc(encodeZtoc(z)).compressionAlgorithm, 'uncompressed');
    assert.ok(encodeZtoc(z).length > encodeZtoc({ ...z, compressionAlgorithm: 'gzip' }).length);
    assert.equal(decodeZtoc(encodeZtoc({ ...z, compressionAlgorithm: 'gzip', checkpoints: gzipBlob(3), maxSpanId: 2 })).compressionAlgorithm, 'gzip');
  });

  test('decoder sorts entries by offset, as soci does', () => {
    const z = sample();
    const shuffled = { ...z, toc: [z.toc[2], z.toc[0], z.toc[3], z.toc[1]] as FileMetadata[] };
    assert.deepEqual(decodeZtoc(encodeZtoc(shuffled)).toc.map((e) => e.name), z.toc.map((e) => e.name));
  });

  test('header-offset chain: a data offset before the previous entry ends is rejected', () => {
    assert.deepEqual(tarHeaderOffsets(sample().toc), [0, 512, 2 ** 33 + 2048, 2 ** 33 + 2048 + 512]);
    const z = sample();
    (z.toc[2] as FileMetadata).uncompressedOffset = 2 ** 33 + 2048; // = alignToTarBlock(prev end) - 0: header would not fit
    (z.toc[1] as FileMetadata).uncompressedSize = 2 ** 33 + 1; // prev end now rounds up past entry 2's data
    assert.throws(() => decodeZtoc(encodeZtoc(z)), { code: 'ZTOC_INVALID', message: /precedes its header offset/ });
    assert.equal(alignToTarBlock(0), 0);
    assert.equal(alignToTarBlock(1), 512);
    assert.equal(alignToTarBlock(512), 512);
  });

  test('span counts must agree: digests, gzip checkpoint count, tar zinfo', () => {
    assert.throws(() => decodeZtoc(encodeZtoc({ ...sample(), spanDigests: [digest('a')] })), /1 span digests for max_span_id 2/);
    assert.throws(() => decodeZtoc(encodeZtoc({ ...sample(), checkpoints: gzipBlob(2) })), /2 gzip checkpoints/);
    const cut = gzipBlob(3).subarray(0, 100);
    assert.throws(() => decodeZtoc(encodeZtoc({ ...sample(), checkpoints: cut })), /does not hold 3 checkpoints/);
    assert.throws(() => decodeZtoc(encodeZtoc({ ...sample(), spanDigests: ['sha256:x', digest('b'), digest('c')] })), /not a sha256 digest/);
    const tar = { ...sample(), compressionAlgorithm: 'uncompressed' as const, checkpoints: encodeTarZinfo({ spanSize: 4, size: 16 }) };
    assert.throws(() => decodeZtoc(encodeZtoc({ ...tar, maxSpanId: 2 })), /tar zinfo gives max_span_id 3/);
    // Legacy v1 gzip blob (checkpoint 0 omitted) is accepted.
    const legacy = gzipBlob(3).subarray(0, 12 + 32785 * 2);
    assert.equal(decodeZtoc(encodeZtoc({ ...sample(), checkpoints: legacy })).checkpoints.length, legacy.length);
  });

  test('every truncation of a valid zTOC is rejected with ZTOC_INVALID, never read as zeros', () => {
    const bytes = encodeZtoc({ ...sample(), checkpoints: gzipBlob(3) });
    let rejected = 0;
    for (let n = 0; n < bytes.length; n += n < 4096 ? 1 : 997) {
      assert.throws(() => decodeZtoc(bytes.subarray(0, n)), (e: Error & { code?: string }) => e.code === 'ZTOC_INVALID', `length ${n}`);
      rejected++;
    }
    assert.ok(rejected > 4096);
  });

  test('unknown entry type, unknown algorithm and missing tables are rejected', () => {
    assert.throws(() => decodeZtoc(encodeZtoc({ ...sample(), toc: [entry({ type: 'sock' as EntryType })] })), /unknown entry type/);
    const bytes = encodeZtoc(sample());
    assert.throws(() => decodeZtoc(new Uint8Array([4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 4, 0])), { code: 'ZTOC_INVALID' });
    assert.ok(bytes.length > 0);
  });

  test('encoder refuses values it cannot carry exactly', () => {
    assert.throws(() => encodeZtoc({ ...sample(), toc: [entry({ uid: 2 ** 32 })] }), RangeError);
    assert.throws(() => encodeZtoc({ ...sample(), toc: [entry({ uncompressedSize: 2 ** 53 })] }), RangeError);
    assert.throws(() => encodeZtoc({ ...sample(), toc: [entry({ xattrs: [['a', '1'], ['a', '2']] })] }), /twice/);
  });
});

describe('TarZinfo', () => {
  test('fields: version 2, span_size, size; zeros omitted (vtable shrinks)', () => {
    const z = decodeTarZinfo(encodeTarZinfo({ spanSize: 4 << 20, size: 2 ** 40 }));
    assert.deepEqual(z, { version: 2, spanSize: 4 << 20, size: 2 ** 40 });
    const full = encodeTarZinfo({ spanSize: 4 << 20, size: 5 });
    const noSize = encodeTarZinfo({ spanSize: 4 << 20, size: 0 });
    assert.ok(noSize.length < full.length);
    assert.deepEqual(decodeTarZinfo(noSize), { version: 2, spanSize: 4 << 20, size: 0 });
    // Layout of Go's builder order (version, span_size, size prepended; 8-byte alignment): root uoffset 20,
    // 6 bytes padding, vtable {10, 28, version@24, span_size@12, size@4}, table: soffset 10, size, span_size, pad, version.
    assert.equal(
      Buffer.from(full).toString('hex'),
      ['14000000', '000000000000', '0a001c0018000c000400', '0a000000', '0500000000000000', '0000400000000000', '00000000', '02000000'].join(''),
    );
  });

  test('span math: max_span_id = size/span_size, minus one when exact', () => {
    assert.equal(tarMaxSpanId(10, 4), 2);
    assert.equal(tarMaxSpanId(12, 4), 2);
    assert.equal(tarMaxSpanId(13, 4), 3);
    assert.equal(tarMaxSpanId(1, 4), 0);
    assert.equal(tarMaxSpanId(0, 4), -1);
    assert.deepEqual(tarSpanRange(2, 10, 4), { start: 8, end: 10 });
    assert.deepEqual(tarSpanRange(2, 12, 4), { start: 8, end: 12 });
    assert.throws(() => tarSpanRange(3, 12, 4), RangeError);
    assert.throws(() => tarMaxSpanId(10, 0), RangeError);
  });
});
