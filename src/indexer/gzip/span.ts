/**
 * Span geometry and span restore for gzip layers (soci-format.md §5.3, §6). A span i covers the
 * compressed bytes [start(i), end(i)) with start(i) = in_i − (bits_i ? 1 : 0) and end(i) = in_{i+1} (the
 * blob size for the last span), and the uncompressed bytes [out_i, out_{i+1}) (the uncompressed size
 * for the last). `inflateSpan` turns exactly those compressed bytes back into exactly those
 * uncompressed bytes: raw inflate, primed with the partial byte, with the checkpoint's window as
 * dictionary. The snapshotter's reader decompresses whole spans only, so that is all this offers.
 */
import { CorruptLayer } from '../../oci/errors.js';
import type { Checkpoint, Span } from '../types.js';
import type { EngineName } from './engine.js';
import { selectGzipEngine } from './select-engine.js';

/** Compressed start of the span that begins at `cp` (includes the shared byte when bits ≠ 0). */
export function spanCompressedStart(cp: Checkpoint): number {
  return cp.in - (cp.bits !== 0 ? 1 : 0);
}

/** The spans described by checkpoints, their digests and the layer's sizes. */
export function spansFromCheckpoints(checkpoints: readonly Checkpoint[], spanDigests: readonly string[], compressedSize: number, uncompressedSize: number): Span[] {
  if (spanDigests.length !== checkpoints.length) {
    throw new RangeError(`${spanDigests.length} span digests for ${checkpoints.length} checkpoints`);
  }
  return checkpoints.map((cp, i) => {
    const next = checkpoints[i + 1];
    return {
      id: i,
      start: spanCompressedStart(cp),
      end: next ? next.in : compressedSize,
      outStart: cp.out,
      outEnd: next ? next.out : uncompressedSize,
      digest: spanDigests[i]!,
    };
  });
}

/**
 * Decompresses one whole span. `compressed` is blob[start, end) of the span that starts at `cp`;
 * `length` is its uncompressed length (outEnd − outStart). Throws CorruptLayer when the bytes do not
 * inflate to exactly `length` bytes.
 */
export function inflateSpan(cp: Checkpoint, compressed: Uint8Array, length: number, opts: { engine?: EngineName } = {}): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid span length ${length}`);
  return inflateSpanInto(cp, compressed, new Uint8Array(length), opts);
}

/**
 * `inflateSpan` into the caller's buffer, whose length is the span's uncompressed length (e.g. a view of a
 * buffer reused from span to span); returns `output`.
 */
export function inflateSpanInto(cp: Checkpoint, compressed: Uint8Array, output: Uint8Array, opts: { engine?: EngineName } = {}): Uint8Array {
  const length = output.length;
  if (length === 0) return output;
  const engine = selectGzipEngine(opts.engine ?? 'auto');
  const produced = engine.inflateSpan(compressed, cp.bits, cp.window, output);
  if (produced < 0) throw new CorruptLayer(`span inflate failed (zlib error ${produced})`, spanCompressedStart(cp));
  if (produced !== length) {
    throw new CorruptLayer(`span inflated to ${produced} bytes, expected ${length}`, spanCompressedStart(cp));
  }
  return output;
}
