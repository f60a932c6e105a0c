/**
 * Codec of the gzip checkpoints blob, the zTOC's `checkpoints` byte vector (soci-format.md §5.1).
 * v2 (always written): little-endian `int32 count, int64 span_size`, then per checkpoint
 * `int64 in, int64 out, uint8 bits, window[32768]` — 12 + 32785·N bytes. The legacy v1 layout
 * (decode only) omits checkpoint 0, which is then `{in: 10, out: 0, bits: 0, zero window}`; the two are
 * told apart by length alone, as soci's `blob_to_zinfo` does.
 */
import type { Checkpoint } from '../types.js';
import { WINDOW_SIZE } from './engine.js';

const HEADER = 12;
const RECORD = 8 + 8 + 1 + WINDOW_SIZE;

export interface ZinfoBlob {
  spanSize: number;
  checkpoints: Checkpoint[];
  /** 2 for the current layout, 1 for the legacy one. */
  version: 1 | 2;
}

export function zinfoBlobSize(count: number): number {
  return HEADER + RECORD * count;
}

/** Encodes checkpoints as a v2 blob. */
export function encodeZinfoBlob(checkpoints: readonly Checkpoint[], spanSize: number): Uint8Array {
  if (checkpoints.length > 0x7fffffff) throw new RangeError('too many checkpoints');
  const out = new Uint8Array(zinfoBlobSize(checkpoints.length));
  const view = new DataView(out.buffer);
  view.setInt32(0, checkpoints.length, true);
  view.setBigInt64(4, toInt64(spanSize, 'span_size'), true);
  let p = HEADER;
  for (const cp of checkpoints) {
    if (!Number.isInteger(cp.bits) || cp.bits < 0 || cp.bits > 7) throw new RangeError(`checkpoint bits ${cp.bits} out of range`);
    if (cp.window.length !== WINDOW_SIZE) throw new RangeError(`checkpoint window is ${cp.window.length} bytes, not ${WINDOW_SIZE}`);
    view.setBigInt64(p, toInt64(cp.in, 'in'), true);
    view.setBigInt64(p + 8, toInt64(cp.out, 'out'), true);
    out[p + 16] = cp.bits;
    out.set(cp.window, p + 17);
    p += RECORD;
  }
  return out;
}

/** Decodes a v2 or legacy v1 blob; throws RangeError on any other length or an out-of-range field. */
export function decodeZinfoBlob(blob: Uint8Array): ZinfoBlob {
  if (blob.length < HEADER) throw new RangeError(`zinfo blob too short: ${blob.length} bytes`);
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const count = view.getInt32(0, true);
  if (count < 0) throw new RangeError(`zinfo blob has negative checkpoint count ${count}`);
  const spanSize = fromInt64(view.getBigInt64(4, true), 'span_size');
  let version: 1 | 2;
  const checkpoints: Checkpoint[] = [];
  if (blob.length === zinfoBlobSize(count)) {
    version = 2;
  } else if (count >= 1 && blob.length === zinfoBlobSize(count - 1)) {
    version = 1;
    checkpoints.push({ in: 10, out: 0, bits: 0, window: new Uint8Array(WINDOW_SIZE) });
  } else {
    throw new RangeError(`zinfo blob is ${blob.length} bytes, which fits neither layout for ${count} checkpoints`);
  }
  for (let p = HEADER; p < blob.length; p += RECORD) {
    const bits = blob[p + 16]!;
    if (bits > 7) throw new RangeError(`checkpoint bits ${bits} out of range`);
    checkpoints.push({
      in: fromInt64(view.getBigInt64(p, true), 'in'),
      out: fromInt64(view.getBigInt64(p + 8, true), 'out'),
      bits,
      window: blob.slice(p + 17, p + 17 + WINDOW_SIZE),
    });
  }
  return { spanSize, checkpoints, version };
}

function toInt64(n: number, field: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`zinfo ${field} ${n} is not a non-negative safe integer`);
  return BigInt(n);
}

function fromInt64(v: bigint, field: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`zinfo ${field} ${v} out of range`);
  return Number(v);
}
