/**
 * The `zinfo.TarZinfo` flatbuffer that stands in for gzip checkpoints in the zTOC of an uncompressed tar
 * layer (soci-format.md §4.1, §5.4): a table of `version` int32 (id 0, always 2), `span_size` int64 (id 1)
 * and `size` int64 (id 2, the layer's byte size), each omitted when 0 as soci's Go builder omits defaults,
 * added in that order. Spans are fixed: span i is [i·span_size, min((i+1)·span_size, size)), and
 * `max_span_id` is size / span_size, minus one when the division is exact (so a 0-byte layer gives −1,
 * exactly as soci computes it).
 */
import { Builder } from 'flatbuffers';
import { FbBuffer, ZtocFormatError } from './fb-reader.js';

/** The only TarZinfo version soci writes (kept equal to the gzip zinfo version). */
export const TAR_ZINFO_VERSION = 2;

export interface TarZinfo {
  version?: number;
  spanSize: number;
  size: number;
}

function int64(n: number, what: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`TarZinfo ${what} ${n} is not a non-negative safe integer`);
  return BigInt(n);
}

/** Serialize byte-identically to soci's `TarZinfo.Bytes()`. */
export function encodeTarZinfo(z: TarZinfo): Uint8Array {
  const b = new Builder(0);
  b.startObject(3);
  b.addFieldInt32(0, z.version ?? TAR_ZINFO_VERSION, 0);
  b.addFieldInt64(1, int64(z.spanSize, 'span_size'), 0n);
  b.addFieldInt64(2, int64(z.size, 'size'), 0n);
  b.finish(b.endObject());
  return b.asUint8Array().slice();
}

export function decodeTarZinfo(bytes: Uint8Array): Required<TarZinfo> {
  const t = new FbBuffer(bytes).root('TarZinfo');
  const num = (v: bigint, what: string): number => {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZtocFormatError(`TarZinfo ${what} ${v} is out of range`);
    return Number(v);
  };
  return { version: t.int32(0, 0), spanSize: num(t.int64(1, 0n), 'span_size'), size: num(t.int64(2, 0n), 'size') };
}

/** soci's `TarZinfo.MaxSpanID`. */
export function tarMaxSpanId(size: number, spanSize: number): number {
  if (!(spanSize > 0)) throw new RangeError(`span size ${spanSize} must be positive`);
  const n = Math.floor(size / spanSize);
  return size % spanSize === 0 ? n - 1 : n;
}

/** Span `id` of a tar layer: the same range compressed and uncompressed. */
export function tarSpanRange(id: number, size: number, spanSize: number): { start: number; end: number } {
  const max = tarMaxSpanId(size, spanSize);
  if (!Number.isInteger(id) || id < 0 || id > max) throw new RangeError(`span ${id} outside 0..${max}`);
  return { start: id * spanSize, end: id === max ? size : (id + 1) * spanSize };
}
