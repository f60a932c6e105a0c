/**
 * The zTOC flatbuffer codec (soci-format.md §4). `encodeZtoc` drives the npm flatbuffers `Builder` in
 * exactly the call order of soci's Go `ztocToFlatbuffer` (§4.3): strings always created (even empty),
 * TOC entries built last to first, xattrs sorted by key in byte order, scalars equal to their schema
 * default omitted, int64 fields as bigint, uid/gid as their uint32 bit pattern. That order is what makes
 * the bytes (and so the digest) identical to the soci CLI's; the golden vector of soci's `TestWriteZtoc`
 * (65928 bytes, sha256:eba28fdf…c7ec) is checked in codec.test.ts. `decodeZtoc` reads with bounds checks
 * and applies the reader rules of §4.2 (entries sorted by offset, tar-header-offset chain) plus span-count
 * consistency, throwing `ZtocFormatError` (code `ZTOC_INVALID`).
 */
import { Builder } from 'flatbuffers';
import type { CompressionAlgorithm, EntryType, FileMetadata, Ztoc } from '../types.js';
import { FbBuffer, ZtocFormatError, type FbTable } from './fb-reader.js';
import { decodeTarZinfo, tarMaxSpanId } from './tar-zinfo.js';

/** Flatbuffer enum `ztoc.CompressionAlgorithm` (underlying byte); Gzip is the schema default. */
const ALGORITHM_CODE: Record<CompressionAlgorithm, number> = { gzip: 1, uncompressed: 2 };
const DEFAULT_ALGORITHM = 1;
const ENTRY_TYPES: readonly string[] = ['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const GZIP_RECORD = 32785;
const GZIP_HEADER = 12;
const SPAN_DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export interface DecodeZtocOptions {
  /** Most TOC entries accepted (default 4 million). */
  maxEntries?: number;
  /** Most spans accepted (default 1 million). */
  maxSpans?: number;
  /** Most PAX records per entry (default 10000). */
  maxXattrs?: number;
}

function int64(n: number, what: string): bigint {
  if (!Number.isSafeInteger(n)) throw new RangeError(`zTOC ${what} ${n} is not a safe integer`);
  return BigInt(n);
}

function uint32Bits(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`zTOC ${what} ${n} is not a uint32`);
  return n | 0;
}

/** Byte-order comparison of two strings (Go's sort.Strings on UTF-8). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function offsetVector(b: Builder, offsets: number[]): number {
  b.startVector(4, offsets.length, 4);
  for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i] as number);
  return b.endVector();
}

function encodeEntry(b: Builder, e: FileMetadata): number {
  const name = b.createString(e.name);
  const type = b.createString(e.type);
  const linkname = b.createString(e.linkname);
  const uname = b.createString(e.uname);
  const gname = b.createString(e.gname);
  const modTime = b.createString(e.modTime);
  const records = [...e.xattrs].sort((x, y) => byteOrder(x[0], y[0]));
  for (let i = 1; i < records.length; i++) {
    if ((records[i] as [string, string])[0] === (records[i - 1] as [string, string])[0]) {
      throw new RangeError(`zTOC entry ${JSON.stringify(e.name)} has PAX record ${JSON.stringify(records[i]?.[0])} twice`);
    }
  }
  const xattrOffsets = records.map(([k, v]) => {
    const key = b.createString(k);
    const value = b.createString(v);
    b.startObject(2);
    b.addFieldOffset(0, key, 0);
    b.addFieldOffset(1, value, 0);
    return b.endObject();
  });
  const xattrs = offsetVector(b, xattrOffsets);
  b.startObject(14);
  b.addFieldOffset(0, name, 0);
  b.addFieldOffset(1, type, 0);
  b.addFieldInt64(2, int64(e.uncompressedOffset, 'uncompressed_offset'), 0n);
  b.addFieldInt64(3, int64(e.uncompressedSize, 'uncompressed_size'), 0n);
  b.addFieldOffset(4, linkname, 0);
  b.addFieldInt64(5, int64(e.mode, 'mode'), 0n);
  b.addFieldInt32(6, uint32Bits(e.uid, 'uid'), 0);
  b.addFieldInt32(7, uint32Bits(e.gid, 'gid'), 0);
  b.addFieldOffset(8, uname, 0);
  b.addFieldOffset(9, gname, 0);
  b.addFieldOffset(10, modTime, 0);
  b.addFieldInt64(11, int64(e.devmajor, 'devmajor'), 0n);
  b.addFieldInt64(12, int64(e.devminor, 'devminor'), 0n);
  b.addFieldOffset(13, xattrs, 0);
  return b.endObject();
}

/** Serialize a zTOC byte-identically to soci's Go marshaler. */
export function encodeZtoc(z: Ztoc): Uint8Array {
  const b = new Builder(0);
  const version = b.createString(z.version);
  const buildTool = b.createString(z.buildToolIdentifier);

  const entryOffsets = new Array<number>(z.toc.length);
  for (let i = z.toc.length - 1; i >= 0; i--) entryOffsets[i] = encodeEntry(b, z.toc[i] as FileMetadata);
  const metadata = offsetVector(b, entryOffsets);
  b.startObject(1);
  b.addFieldOffset(0, metadata, 0);
  const toc = b.endObject();

  const checkpoints = b.createByteVector(z.checkpoints);
  const spanDigests = offsetVector(b, z.spanDigests.map((d) => b.createString(d)));
  if (!Number.isInteger(z.maxSpanId) || z.maxSpanId < -0x80000000 || z.maxSpanId > 0x7fffffff) {
    throw new RangeError(`zTOC max_span_id ${z.maxSpanId} is not an int32`);
  }
  b.startObject(4);
  b.addFieldInt32(1, z.maxSpanId, 0);
  b.addFieldOffset(2, spanDigests, 0);
  b.addFieldOffset(3, checkpoints, 0);
  b.addFieldInt8(0, ALGORITHM_CODE[z.compressionAlgorithm], DEFAULT_ALGORITHM);
  const compressionInfo = b.endObject();

  b.startObject(6);
  b.addFieldOffset(0, version, 0);
  b.addFieldOffset(1, buildTool, 0);
  b.addFieldOffset(4, toc, 0);
  b.addFieldInt64(2, int64(z.compressedArchiveSize, 'compressed_archive_size'), 0n);
  b.addFieldInt64(3, int64(z.uncompressedArchiveSize, 'uncompressed_archive_size'), 0n);
  b.addFieldOffset(5, compressionInfo, 0);
  b.finish(b.endObject());
  return b.asUint8Array().slice();
}

function safe(n: bigint, what: string, nonNegative: boolean): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER) || (nonNegative && n < 0n)) {
    throw new ZtocFormatError(`${what} ${n} is out of range`);
  }
  return Number(n);
}

function decodeEntry(t: FbTable, i: number, maxXattrs: number): FileMetadata {
  const what = `toc[${i}]`;
  const type = t.string(1);
  if (!ENTRY_TYPES.includes(type)) throw new ZtocFormatError(`${what}: unknown entry type ${JSON.stringify(type)}`);
  const xattrs = t.tablesAt(13, `${what}.xattrs`, maxXattrs).map((x): [string, string] => [x.string(0), x.string(1)]);
  return {
    name: t.string(0),
    type: type as EntryType,
    uncompressedOffset: safe(t.int64(2, 0n), `${what}.uncompressed_offset`, true),
    uncompressedSize: safe(t.int64(3, 0n), `${what}.uncompressed_size`, true),
    linkname: t.string(4),
    mode: safe(t.int64(5, 0n), `${what}.mode`, false),
    uid: t.uint32(6, 0),
    gid: t.uint32(7, 0),
    uname: t.string(8),
    gname: t.string(9),
    modTime: t.string(10),
    devmajor: safe(t.int64(11, 0n), `${what}.devmajor`, false),
    devminor: safe(t.int64(12, 0n), `${what}.devminor`, false),
    xattrs,
  };
}

/** Round up to a multiple of the 512-byte tar block. */
export function alignToTarBlock(n: number): number {
  return Math.ceil(n / 512) * 512;
}

/**
 * The reader's derived tar-header offsets (§4.2): entry i's header starts at
 * alignToTarBlock(prev.offset + prev.size), and must not lie after its data. `toc` must be sorted.
 */
export function tarHeaderOffsets(toc: readonly FileMetadata[]): number[] {
  const out: number[] = [];
  let next = 0;
  for (const [i, e] of toc.entries()) {
    if (next > e.uncompressedOffset) {
      throw new ZtocFormatError(`toc[${i}] ${JSON.stringify(e.name)}: data offset ${e.uncompressedOffset} precedes its header offset ${next}`);
    }
    out.push(next);
    next = alignToTarBlock(e.uncompressedOffset + e.uncompressedSize);
  }
  return out;
}

function checkSpans(z: Ztoc): void {
  if (z.maxSpanId < 0) throw new ZtocFormatError(`max_span_id ${z.maxSpanId} is negative`);
  if (z.spanDigests.length !== z.maxSpanId + 1) {
    throw new ZtocFormatError(`${z.spanDigests.length} span digests for max_span_id ${z.maxSpanId}`);
  }
  for (const [i, d] of z.spanDigests.entries()) {
    if (!SPAN_DIGEST_RE.test(d)) throw new ZtocFormatError(`span_digests[${i}] ${JSON.stringify(d.slice(0, 80))} is not a sha256 digest`);
  }
  const cp = z.checkpoints;
  if (z.compressionAlgorithm === 'gzip') {
    if (cp.length < GZIP_HEADER) throw new ZtocFormatError(`gzip checkpoint blob of ${cp.length} bytes is too short`);
    const n = new DataView(cp.buffer, cp.byteOffset, cp.byteLength).getInt32(0, true);
    // v2 layout: 12 + 32785·N; the legacy v1 layout omits checkpoint 0 (§5.1).
    if (n <= 0 || (cp.length !== GZIP_HEADER + GZIP_RECORD * n && cp.length !== GZIP_HEADER + GZIP_RECORD * (n - 1))) {
      throw new ZtocFormatError(`gzip checkpoint blob of ${cp.length} bytes does not hold ${n} checkpoints`);
    }
    if (n !== z.maxSpanId + 1) throw new ZtocFormatError(`${n} gzip checkpoints for max_span_id ${z.maxSpanId}`);
  } else {
    const info = decodeTarZinfo(cp);
    if (info.spanSize <= 0) throw new ZtocFormatError(`tar zinfo span_size ${info.spanSize} must be positive`);
    const expected = tarMaxSpanId(info.size, info.spanSize);
    if (expected !== z.maxSpanId) throw new ZtocFormatError(`tar zinfo gives max_span_id ${expected}, zTOC says ${z.maxSpanId}`);
  }
}

/** Decode and validate a zTOC. TOC entries come back sorted by uncompressed offset, as soci's reader sorts them. */
export function decodeZtoc(bytes: Uint8Array, opts: DecodeZtocOptions = {}): Ztoc {
  const buf = new FbBuffer(bytes);
  const root = buf.root('Ztoc');
  const tocTable = root.table(4, 'toc');
  const info = root.table(5, 'compression_info');
  if (!tocTable) throw new ZtocFormatError('zTOC has no toc table');
  if (!info) throw new ZtocFormatError('zTOC has no compression_info table');
  const maxXattrs = opts.maxXattrs ?? 10000;
  const toc = tocTable
    .tablesAt(0, 'toc', opts.maxEntries ?? 4_000_000)
    .map((t, i) => decodeEntry(t, i, maxXattrs))
    .sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
  tarHeaderOffsets(toc);
  const code = info.int8(0, DEFAULT_ALGORITHM);
  const algorithm = (Object.keys(ALGORITHM_CODE) as CompressionAlgorithm[]).find((k) => ALGORITHM_CODE[k] === code);
  if (!algorithm) throw new ZtocFormatError(`unknown compression algorithm ${code}`);
  const z: Ztoc = {
    version: root.string(0),
    buildToolIdentifier: root.string(1),
    compressedArchiveSize: safe(root.int64(2, 0n), 'compressed_archive_size', true),
    uncompressedArchiveSize: safe(root.int64(3, 0n), 'uncompressed_archive_size', true),
    toc,
    compressionAlgorithm: algorithm,
    maxSpanId: info.int32(1, 0),
    spanDigests: info.stringsAt(2, 'span_digests', opts.maxSpans ?? 1_000_000),
    checkpoints: (info.bytes(3) ?? new Uint8Array(0)).slice(),
  };
  checkSpans(z);
  return z;
}
