/**
 * Test helpers for the native FUSE table (not part of the build): a zTOC around a hand-made TOC, and the
 * byte-for-byte comparison of two tables that the table tests and the table-worker tests both rely on.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { FileMetadata, Ztoc } from '../../../indexer/types.js';
import { encodeZtoc } from '../../../indexer/ztoc/index.js';
import type { NativeTable } from '../native-fs.js';

/** A gzip zTOC around `toc` (one all-zero checkpoint, one span): only its TOC matters to these tests. */
export function ztocBytes(toc: FileMetadata[]): Uint8Array {
  const size = 1 << 30;
  const blob = new Uint8Array(12 + 32785);
  new DataView(blob.buffer).setInt32(0, 1, true);
  const z: Ztoc = {
    version: '0.9', buildToolIdentifier: 'test', compressedArchiveSize: size, uncompressedArchiveSize: size, toc,
    compressionAlgorithm: 'gzip', maxSpanId: 0, spanDigests: [`sha256:${createHash('sha256').update('s').digest('hex')}`], checkpoints: blob,
  };
  return encodeZtoc(z);
}

const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** `got` equals `want`: stat counts and every byte of nodes, dirents, xattrs and strings (and, with `sameTypes`, their array types). */
export function assertSameTable(got: NativeTable, want: NativeTable, what: string, opts: { sameTypes?: boolean } = {}): void {
  assert.equal(got.statBlocks, want.statBlocks, `${what}: statBlocks`);
  assert.equal(got.statFiles, want.statFiles, `${what}: statFiles`);
  for (const k of ['nodes', 'dirents', 'xattrs', 'strings'] as const) {
    if (opts.sameTypes === true) assert.equal(got[k].constructor, want[k].constructor, `${what}: ${k} element type`);
    assert.ok(bytesOf(got[k]).equals(bytesOf(want[k])), `${what}: ${k} differ (${got[k].byteLength} vs ${want[k].byteLength} bytes)`);
  }
}
