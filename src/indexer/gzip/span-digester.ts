/**
 * SpanDigester: a gzip layer's span digests (soci-format.md §6) computed apart from the inflate — on the
 * worker pool's reading thread, while a worker runs `GzipCheckpointer` with `hashSpans: false`.
 *
 * The inflating side hands back, in order, each stretch of the blob it has consumed together with the
 * checkpoints (`in`, `bits`) it placed up to the end of that stretch, and whether the newest checkpoint so
 * far is still `open` (no output after it yet); `advance` hashes the stretch at once and keeps none of it.
 * Span i is sha256 over blob[in_i − (bits_i ? 1 : 0), in_{i+1}) (the blob end for the last span), exactly
 * as the checkpointer hashes it; the one byte two spans share when bits ≠ 0 is the last byte hashed. The
 * checkpointer's end may drop a trailing checkpoint that has no output after it and merge its span into
 * the previous one: while the newest checkpoint is open, the previous span's hash is carried on beside
 * the current one, so that merge needs no second pass. `finish` takes the final span count.
 *
 * Two digesters can share the work: each checkpoint says whether its span is `mine`; a digester hashes
 * only its own spans (carrying its own across a merge) and `finish` leaves the others' digests undefined,
 * for `mergeSpanDigests` to fill in from the other side.
 */
import { createHash, type Hash } from 'node:crypto';

export class SpanDigester {
  #consumed = 0;
  #lastByte = 0;
  #cur: Hash | undefined;
  #prev: Hash | undefined;
  #spans = 0;
  #open = false;
  readonly #digests: Array<string | undefined> = [];
  #finished = false;

  /** Bytes of the blob hashed (or, before the first checkpoint, passed over) so far. */
  get consumed(): number {
    return this.#consumed;
  }

  /**
   * The next `bytes` of the blob, and the checkpoints placed (in order) at or before their end; `open`
   * is true when the newest checkpoint so far has no output after it yet. `bytes` is not retained. A
   * checkpoint's span is hashed here unless it says `mine: false`.
   */
  advance(bytes: Uint8Array, checkpoints: ReadonlyArray<{ in: number; bits: number; mine?: boolean }>, open: boolean): void {
    if (this.#finished) throw new Error('SpanDigester: advance after finish');
    const base = this.#consumed;
    const end = base + bytes.length;
    let pos = 0;
    for (const cp of checkpoints) {
      if (cp.in > end || cp.in < base + pos || (cp.bits !== 0 && cp.in === 0)) {
        throw new RangeError(`SpanDigester: checkpoint at ${cp.in} outside [${base + pos}, ${end}]`);
      }
      this.#update(bytes, pos, cp.in - base);
      pos = cp.in - base;
      if (this.#spans > 0) this.#digests.push(this.#cur ? `sha256:${this.#cur.copy().digest('hex')}` : undefined);
      this.#prev = this.#cur;
      this.#cur = cp.mine === false ? undefined : createHash('sha256');
      // A checkpoint inside a byte: its span starts with that byte (the previous span's last one).
      if (cp.bits !== 0) this.#cur?.update(Uint8Array.of(this.#lastByte));
      this.#spans++;
    }
    this.#open = open;
    if (!open) this.#prev = undefined;
    this.#update(bytes, pos, bytes.length);
    this.#consumed = end;
  }

  /**
   * Ends the blob after the last `advance`: the zTOC keeps the first `spanCount` checkpoints (all those
   * reported, or one fewer when the trailing one was dropped). Returns one digest per span, undefined
   * for the spans that were not this digester's.
   */
  finish(spanCount: number): Array<string | undefined> {
    if (this.#finished) throw new Error('SpanDigester: finish called twice');
    this.#finished = true;
    if (spanCount < 1 || spanCount > this.#spans || this.#spans - spanCount > 1) {
      throw new Error(`SpanDigester: ${spanCount} spans asked for, ${this.#spans} checkpoints reported`);
    }
    let last = this.#cur;
    if (spanCount < this.#spans) {
      if (!this.#open) throw new Error('SpanDigester: the dropped checkpoint had output after it');
      this.#digests.pop();
      last = this.#prev;
    }
    this.#digests.push(last ? `sha256:${last.digest('hex')}` : undefined);
    this.#cur = this.#prev = undefined;
    return this.#digests;
  }

  /** Hashes bytes[from, to) into the live span hashes (none before the first checkpoint, nor in others' spans). */
  #update(bytes: Uint8Array, from: number, to: number): void {
    if (to <= from) return;
    if (this.#cur || this.#prev) {
      const part = bytes.subarray(from, to);
      this.#cur?.update(part);
      this.#prev?.update(part);
    }
    this.#lastByte = bytes[to - 1]!;
  }
}

/** Joins two digesters' `finish` results: every span must have its digest from exactly one of them. */
export function mergeSpanDigests(a: ReadonlyArray<string | undefined>, b: ReadonlyArray<string | undefined>): string[] {
  if (a.length !== b.length) throw new Error(`span digests: ${a.length} against ${b.length} spans`);
  return a.map((d, i) => {
    const e = b[i];
    if ((d === undefined) === (e === undefined)) throw new Error(`span ${i}: ${d === undefined ? 'no' : 'two'} digests`);
    return (d ?? e) as string;
  });
}
