/**
 * The narrow inflate interface the gzip checkpointer and the span reader need, implemented twice: over
 * zlib in a small N-API addon (native-engine.ts, native/gzip_engine.c) and over pako's low-level
 * inflate (js-engine.ts). Both must give bit-identical results (soci-format.md §5.2: checkpoint
 * placement is a pure function of the deflate bit position, so it does not depend on the inflater).
 *
 * Contract of `BlockInflater.run` (one gzip member, windowBits 31 = gzip only, header CRC checked):
 * it inflates `input[inPos, inEnd)` into `output[outPos, outEnd)` with zlib's `Z_BLOCK` flush and keeps
 * going until the first of: zlib returns anything but Z_OK (Z_STREAM_END after the trailer was checked,
 * an error, or Z_BUF_ERROR for no progress); the input is used up; the output is full; or the stream
 * sits on a block boundary that is a checkpoint candidate — `data_type & 128` set, `data_type & 64`
 * clear, and total output >= `minOut`. It allocates nothing and writes its results into the shared
 * `state` array at the `ST_*` indices. `data_type` is zlib's: &128 the stream is at a block boundary (or
 * just past the gzip header), &64 the block just ended was the last one, &7 unused bits of the last
 * byte consumed. Every return reports `data_type`, whatever stopped it, so a boundary that coincides
 * with the end of the input is not lost (zlib only reports each boundary once).
 *
 * `inflateSpan` restores a checkpoint per §5.3: raw inflate, prime with the high `bits` bits of
 * `input[0]` (the byte at in−1) when bits ≠ 0, set the 32 KiB window as dictionary, and fill `output`.
 */

export const Z_OK = 0;
/** The flush value that stops inflate at every deflate block boundary. */
export const Z_BLOCK_FLUSH = 5;
export const Z_STREAM_END = 1;
export const Z_NEED_DICT = 2;
export const Z_BUF_ERROR = -5;
export const Z_DATA_ERROR = -3;

/** Indices into `BlockInflater.state`. */
export const ST_RET = 0;
export const ST_IN_POS = 1;
export const ST_OUT_POS = 2;
export const ST_DATA_TYPE = 3;
export const ST_TOTAL_IN = 4;
export const ST_TOTAL_OUT = 5;
export const ST_LENGTH = 6;

export const WINDOW_SIZE = 32768;

export interface BlockInflater {
  /** Written by every `run`: ret, input position, output position, data_type, total in, total out. */
  readonly state: Float64Array;
  run(input: Uint8Array, inPos: number, inEnd: number, output: Uint8Array, outPos: number, outEnd: number, minOut: number): void;
  /** zlib's message for the last error, if any. */
  message(): string | undefined;
  /** Frees the inflate state; the inflater must not be used afterwards. */
  close(): void;
}

/** Which engine to use: the addon, pako, or the addon when it loads and pako otherwise. */
export type EngineName = 'native' | 'js' | 'auto';
/** Alias of EngineName, the engine option. */
export type EngineChoice = EngineName;

export interface GzipEngine {
  readonly name: 'native' | 'js';
  createBlockInflater(): BlockInflater;
  /**
   * Raw-inflates a span (see above) into `output`. Returns the number of bytes produced (at most
   * `output.length`; fewer when the deflate stream ended first) or a negative zlib error code.
   */
  inflateSpan(input: Uint8Array, bits: number, window: Uint8Array, output: Uint8Array): number;
}
