import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TarTocBuilder } from './toc-builder.js';
import { parseNumeric } from './header.js';
import { END, concat, entry, gnuLong, header, paxHeader } from '../../../test/oracles/tartoc/tar-writer.js';

test('parseNumeric: octal padding and base-256', () => {
  const f = (bytes: number[] | string) => {
    const b = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : new Uint8Array(bytes);
    return parseNumeric(b, 0, b.length);
  };
  assert.equal(f(' 0644 \0'), 0o644);
  assert.equal(f('\0\0 17'), 0o17);
  assert.equal(f('12\x0034'), 0o12);
  assert.equal(f('\0\0\0'), 0);
  assert.equal(f('1 2'), undefined);
  assert.equal(f('9'), undefined);
  assert.equal(f([0x80, 0, 0, 0, 0, 0, 0, 0x01, 0x00]), 256);
  assert.equal(f([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]), -2);
  assert.equal(f([0x80, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0]), 2n ** 61n);
  assert.equal(f([0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), undefined);
});

test('entries, offsets, archive size and onEnd; data after the end is ignored', () => {
  const tar = concat([
    paxHeader([['path', 'long/' + 'x'.repeat(200)], ['SCHILY.xattr.user.b', '2'], ['SCHILY.xattr.user.a', '1']]),
    entry({ name: 'ignored', uname: 'u', gname: 'g', uid: 5, mode: 0o755 }, 'hello'),
    gnuLong('L', 'gnu-long'),
    entry({ format: 'gnu', name: 'short', typeflag: '5' }),
    END,
    new Uint8Array(2048).fill(7),
  ]);
  let ended: number | undefined;
  const b = new TarTocBuilder({ onEnd: (n) => { ended = n; } });
  for (let i = 0; i < tar.length; i += 100) b.write(tar.subarray(i, i + 100));
  const endAt = 9 * 512; // x+data, entry+data, L+data, dir, two zero blocks
  assert.equal(ended, endAt);
  assert.equal(b.ended, true);
  assert.equal(b.archiveSize, endAt);
  const toc = b.end();
  assert.equal(toc.uncompressedArchiveSize, endAt);
  assert.equal(toc.entries.length, 2);
  const [a, d] = toc.entries;
  assert.equal(a?.name, 'long/' + 'x'.repeat(200));
  assert.equal(a?.uncompressedOffset, 3 * 512);
  assert.equal(a?.uncompressedSize, 5);
  assert.equal(a?.mode, 0o755);
  assert.deepEqual(a?.xattrs.map(([k]) => k), ['SCHILY.xattr.user.a', 'SCHILY.xattr.user.b', 'path']);
  assert.equal(a?.modTime, '2023-11-14T22:13:20Z');
  assert.deepEqual([d?.name, d?.type, d?.uncompressedOffset], ['gnu-long', 'dir', 7 * 512]);
});

test('end of stream: header boundary and padding are EOF, data and header are corrupt; errors are sticky', () => {
  const ok = (bytes: Uint8Array) => { const b = new TarTocBuilder(); b.write(bytes); return b.end().uncompressedArchiveSize; };
  const e = entry({ name: 'a' }, 'abc');
  assert.equal(ok(e), 1024);
  assert.equal(ok(e.subarray(0, 600)), 600);
  assert.equal(ok(concat([e, new Uint8Array(512)])), 1536);
  const midHeader = concat([e, header({ name: 'b' })]).subarray(0, 1027);
  const midData = concat([e, header({ name: 'b', size: 10 }), new Uint8Array(4).fill(1)]);
  for (const [bytes, at] of [[midHeader, 1027], [midData, 1540]] as const) {
    const b = new TarTocBuilder();
    b.write(bytes);
    assert.throws(() => b.end(), (err: { code?: string; offset?: number; where?: string }) => err.code === 'CORRUPT_LAYER' && err.offset === at && err.where === 'uncompressed');
    assert.throws(() => b.end(), { code: 'CORRUPT_LAYER' });
  }
  const bad = new TarTocBuilder();
  assert.throws(() => bad.write(concat([e, header({ name: 'b', checksum: 'bad' })])), (err: { code?: string; offset?: number }) => err.code === 'CORRUPT_LAYER' && err.offset === 1024);
  assert.throws(() => bad.write(END), { code: 'CORRUPT_LAYER' });
});

test('skips: global header, sparse, unknown typeflag', () => {
  const code = (bytes: Uint8Array) => { try { const b = new TarTocBuilder(); b.write(bytes); b.end(); return 'ok'; } catch (err) { return (err as { code: string }).code; } };
  assert.equal(code(concat([paxHeader([['comment', 'x']], 'g'), END])), 'PAX_GLOBAL_HEADER');
  assert.equal(code(concat([entry({ format: 'gnu', typeflag: 'S' }), END])), 'SPARSE_ENTRY');
  assert.equal(code(concat([entry({ typeflag: 'V' }), END])), 'UNSUPPORTED_TYPEFLAG');
  assert.equal(code(concat([entry({ typeflag: '0', format: 'gnu', size: { base256: 2n ** 54n } })])), 'VALUE_OUT_OF_RANGE');
});
