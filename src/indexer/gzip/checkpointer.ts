/**
 * GzipCheckpointer: the streaming zran-style pass over a gzip layer that yields its zinfo checkpoints
 * (soci-format.md §5.2) and span digests (§6) while handing the decompressed tar stream to the caller.
 *
 * Placement, exactly as soci's generator with the proxy's two refinements:
 * - checkpoint 0 right after the gzip header (in = header length, out 0, bits 0, zero window);
 * - then at each boundary with data_type&128 and !(data_type&64) where totout − last > spanSize;
 * - never two checkpoints with the same `out` (the first is kept: an empty first block adds none);
 * - none at out >= the limit set by `limitCheckpoints` (the tar end-of-archive), and `end(archiveSize)`
 *   drops a trailing checkpoint with out >= archiveSize, merging its span into the previous one.
 * The window is the 32 KiB of output before `out`, zero left-padded. Output is kept in one buffer whose
 * first 32 KiB are the history of the previous fill, so windows are plain slices.
 *
 * Span digests are computed while streaming: sha256 over blob[start(i), end(i)) with
 * start(i) = in_i − (bits_i ? 1 : 0) and end(i) = in_{i+1} or the blob size. Only the current span's hash
 * is live, plus, until output follows the newest checkpoint, a copy of the previous span's hash
 * carried on, in case `end()` has to merge the two. The layer itself is never retained.
 * With `hashSpans: false` no span is hashed here (`spanDigests` comes back empty): the caller hashes the
 * spans itself from the checkpoints it is told of through `onCheckpoint` and `lastCheckpointOpen`
 * (the worker pool does, on the thread that still holds the compressed bytes).
 *
 * Errors: a damaged or truncated stream is `CorruptLayer` (compressed offset); a second gzip member
 * after the first one's trailer is `LayerSkipped('MULTI_MEMBER_GZIP')`; other trailing bytes are
 * `CorruptLayer('trailing data after gzip stream')`. After an error every call throws it again.
 */
import { createHash, type Hash } from 'node:crypto';
import { CorruptLayer, LayerSkipped } from '../../oci/errors.js';
import type { Checkpoint } from '../types.js';
import {
  ST_DATA_TYPE, ST_IN_POS, ST_OUT_POS, ST_RET, ST_TOTAL_IN, ST_TOTAL_OUT, WINDOW_SIZE, Z_BUF_ERROR, Z_OK, Z_STREAM_END,
  type BlockInflater, type EngineChoice,
} from './engine.js';
import { selectGzipEngine } from './select-engine.js';

export interface GzipCheckpointerOptions {
  /** Span size in uncompressed bytes (soci default 4 MiB). */
  spanSize: number;
  engine?: EngineChoice;
  /** Fresh output bytes per buffer fill (default 1 MiB); onData gets at most this many at once. */
  outputChunkSize?: number;
  /** Hash the spans here (default true). When false, `end()` returns no span digests. */
  hashSpans?: boolean;
  /** Called with each checkpoint as it is placed, in order; `end()` may still drop the newest one. */
  onCheckpoint?: (cp: Checkpoint) => void;
}

export interface GzipZinfoResult {
  checkpoints: Checkpoint[];
  /** `sha256:<hex>` per span, one per checkpoint (empty with `hashSpans: false`). */
  spanDigests: string[];
  spanSize: number;
  /** Bytes fed: the size of the layer blob. */
  compressedSize: number;
  /** Bytes of decompressed output. */
  uncompressedSize: number;
  /** Length of the gzip header: checkpoint 0's `in`. */
  headerSize: number;
}

export class GzipCheckpointer {
  readonly engine: 'native' | 'js';
  readonly #spanSize: number;
  readonly #hashSpans: boolean;
  readonly #onCheckpoint: ((cp: Checkpoint) => void) | undefined;
  readonly #inflater: BlockInflater;
  readonly #st: Float64Array;
  readonly #buf: Uint8Array;
  #outPos = WINDOW_SIZE;
  #delivered = WINDOW_SIZE;
  readonly #checkpoints: Checkpoint[] = [];
  readonly #digests: string[] = [];
  #minOut = 0;
  #limit = Infinity;
  #fed = 0;
  #totIn = 0;
  #totOut = 0;
  #lastByte = 0;
  #hashedTo = 0;
  #cur: Hash | undefined;
  #prev: Hash | undefined;
  #done = false;
  #trailing: number[] = [];
  #trailingAt = 0;
  #error: Error | undefined;
  #ended = false;

  constructor(opts: GzipCheckpointerOptions) {
    if (!Number.isSafeInteger(opts.spanSize) || opts.spanSize < 0) throw new RangeError(`invalid spanSize ${opts.spanSize}`);
    const chunk = opts.outputChunkSize ?? 1 << 20;
    if (!Number.isSafeInteger(chunk) || chunk < 1) throw new RangeError(`invalid outputChunkSize ${chunk}`);
    this.#spanSize = opts.spanSize;
    this.#hashSpans = opts.hashSpans ?? true;
    this.#onCheckpoint = opts.onCheckpoint;
    const engine = selectGzipEngine(opts.engine ?? 'auto');
    this.engine = engine.name;
    this.#inflater = engine.createBlockInflater();
    this.#st = this.#inflater.state;
    this.#buf = new Uint8Array(WINDOW_SIZE + chunk);
  }

  /** From now on, no checkpoint at out >= uncompressedEnd (call it when the tar end-of-archive is seen). */
  limitCheckpoints(uncompressedEnd: number): void {
    this.#limit = Math.min(this.#limit, uncompressedEnd);
    if (this.#totOut >= this.#limit) this.#minOut = Infinity;
  }

  /**
   * True while the newest checkpoint has no output after it, so `end()` may still drop it and merge its
   * span into the previous one (a caller hashing spans itself must keep that span's hash open till then).
   */
  get lastCheckpointOpen(): boolean {
    const cps = this.#checkpoints;
    return cps.length > 1 && this.#totOut <= cps[cps.length - 1]!.out;
  }

  /** Feeds compressed bytes; decompressed bytes go to onData in order (the array is reused afterwards). */
  write(chunk: Uint8Array, onData: (out: Uint8Array) => void): void {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new Error('GzipCheckpointer: write after end');
    try {
      this.#write(chunk, onData);
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  /** Finishes: checks the stream was complete and returns checkpoints, digests and sizes. */
  end(archiveSize: number): GzipZinfoResult {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new Error('GzipCheckpointer: end called twice');
    if (!this.#done) this.#fail(new CorruptLayer('gzip stream truncated', this.#fed));
    if (this.#trailing.length > 0) this.#fail(new CorruptLayer('trailing data after gzip stream', this.#trailingAt));
    this.#ended = true;
    this.#inflater.close();
    const cps = this.#checkpoints;
    if (!this.#hashSpans) {
      while (cps.length > 1 && cps[cps.length - 1]!.out >= archiveSize) {
        if (!this.lastCheckpointOpen) throw new Error('GzipCheckpointer: a checkpoint past the archive end has output after it; call limitCheckpoints() when the end-of-archive is seen');
        cps.pop();
      }
      return this.#result();
    }
    let last = this.#cur!;
    while (cps.length > 1 && cps[cps.length - 1]!.out >= archiveSize) {
      if (!this.#prev) throw new Error('GzipCheckpointer: a checkpoint past the archive end has output after it; call limitCheckpoints() when the end-of-archive is seen');
      cps.pop();
      this.#digests.pop();
      last = this.#prev;
      this.#prev = undefined;
    }
    this.#digests.push(`sha256:${last.digest('hex')}`);
    return this.#result();
  }

  #result(): GzipZinfoResult {
    const cps = this.#checkpoints;
    return {
      checkpoints: cps,
      spanDigests: this.#digests,
      spanSize: this.#spanSize,
      compressedSize: this.#fed,
      uncompressedSize: this.#totOut,
      headerSize: cps[0]!.in,
    };
  }

  #fail(err: Error): never {
    this.#error = err;
    if (!this.#ended) {
      this.#ended = true;
      this.#inflater.close();
    }
    throw err;
  }

  #write(chunk: Uint8Array, onData: (out: Uint8Array) => void): void {
    const base = this.#fed;
    this.#fed += chunk.length;
    const st = this.#st;
    const buf = this.#buf;
    let pos = 0;
    while (!this.#done) {
      const outBefore = this.#outPos;
      this.#inflater.run(chunk, pos, chunk.length, buf, this.#outPos, buf.length, this.#minOut);
      const ret = st[ST_RET]!;
      const newPos = st[ST_IN_POS]!;
      const dt = st[ST_DATA_TYPE]!;
      if (newPos > pos) this.#lastByte = chunk[newPos - 1]!;
      pos = newPos;
      this.#outPos = st[ST_OUT_POS]!;
      this.#totIn = st[ST_TOTAL_IN]!;
      this.#totOut = st[ST_TOTAL_OUT]!;
      if (ret !== Z_OK && ret !== Z_STREAM_END && ret !== Z_BUF_ERROR) {
        throw new CorruptLayer(`gzip: ${this.#inflater.message() ?? `inflate error ${ret}`}`, base + pos);
      }
      if (this.#prev && this.#totOut > this.#checkpoints[this.#checkpoints.length - 1]!.out) this.#prev = undefined;
      if (ret === Z_STREAM_END) {
        this.#deliver(onData);
        this.#done = true;
        break;
      }
      if ((dt & 128) !== 0 && (dt & 64) === 0 && this.#totOut >= this.#minOut) {
        this.#deliver(onData);
        this.#checkpoint(chunk, base, pos, dt & 7);
      }
      const outFull = this.#outPos === buf.length;
      if (outFull) {
        this.#deliver(onData);
        buf.copyWithin(0, buf.length - WINDOW_SIZE);
        this.#outPos = this.#delivered = WINDOW_SIZE;
      }
      if (pos === chunk.length && !outFull) break;
      if (ret === Z_BUF_ERROR && pos < chunk.length && this.#outPos === outBefore && !outFull) {
        throw new CorruptLayer('gzip: inflate made no progress', base + pos);
      }
    }
    if (this.#hashSpans) this.#hashTo(chunk, base, pos);
    if (this.#done && pos < chunk.length) this.#addTrailing(chunk, base, pos);
  }

  #deliver(onData: (out: Uint8Array) => void): void {
    if (this.#outPos > this.#delivered) {
      const start = this.#delivered;
      this.#delivered = this.#outPos;
      onData(this.#buf.subarray(start, this.#outPos));
    }
  }

  /** Updates the live span hashes with the chunk's bytes up to chunk position `pos`. */
  #hashTo(chunk: Uint8Array, base: number, pos: number): void {
    const from = Math.max(this.#hashedTo - base, 0);
    if (this.#cur && pos > from) {
      const part = chunk.subarray(from, pos);
      this.#cur.update(part);
      this.#prev?.update(part);
    }
    this.#hashedTo = base + pos;
  }

  #checkpoint(chunk: Uint8Array, base: number, pos: number, bits: number): void {
    const out = this.#totOut;
    const cps = this.#checkpoints;
    if (out >= this.#limit) {
      this.#minOut = Infinity;
      return;
    }
    if (cps.length > 0 && cps[cps.length - 1]!.out === out) return;
    if (this.#hashSpans) {
      this.#hashTo(chunk, base, pos);
      if (this.#cur) {
        this.#digests.push(`sha256:${this.#cur.copy().digest('hex')}`);
        this.#prev = this.#cur;
      }
      this.#cur = createHash('sha256');
      if (bits !== 0) this.#cur.update(Uint8Array.of(this.#lastByte));
    }
    const cp: Checkpoint = { in: this.#totIn, out, bits, window: this.#buf.slice(this.#outPos - WINDOW_SIZE, this.#outPos) };
    cps.push(cp);
    this.#onCheckpoint?.(cp);
    this.#minOut = out + this.#spanSize + 1;
    if (this.#minOut >= this.#limit) this.#minOut = Infinity;
  }

  #addTrailing(chunk: Uint8Array, base: number, pos: number): void {
    if (this.#trailing.length === 0) this.#trailingAt = base + pos;
    for (let i = pos; i < chunk.length && this.#trailing.length < 2; i++) this.#trailing.push(chunk[i]!);
    if (this.#trailing.length < 2) return;
    if (this.#trailing[0] === 0x1f && this.#trailing[1] === 0x8b) {
      throw new LayerSkipped('MULTI_MEMBER_GZIP', `a second gzip member starts at compressed offset ${this.#trailingAt}`);
    }
    throw new CorruptLayer('trailing data after gzip stream', this.#trailingAt);
  }
}
