/**
 * `SpanFile`: one layer's uncompressed tar stream kept in one sparse file, `<dir>/<digest hex>.tar`, span
 * `i` at its own uncompressed offset, with one presence byte per span in `present` (a SharedArrayBuffer,
 * so a native FUSE server in another thread can read it). Order is the whole contract: a span's bytes are
 * written, then `present[i]` is set; eviction clears `present[i]`, then punches the span's hole
 * (`fallocate --punch-hole`), so a reader that checks, preads and checks again never uses a punched range.
 * Presence survives the process in `<hex>.present` (a 16-byte header: magic and a fingerprint of the span
 * layout, then one byte per span). A span is marked there only after an `fdatasync` of the tar file that
 * follows its write (marks gather for `persistDelayMs`, so one fdatasync covers many spans and the writes
 * of a fill are not forced out span by span), and unmarked before its hole is punched, so a crash can lose
 * marks but never mark bytes that are not on disk; on open only marked spans that the file is long enough
 * to hold are trusted.
 * Spans kept are bounded by `maxBytes` (inflated bytes), least recently used first out. One process owns a
 * layer's file at a time (the snapshotter is one process); two processes sharing a cache dir would not see
 * each other's evictions.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, fdatasync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, write, writeSync } from 'node:fs';
import { join } from 'node:path';

const MAGIC = Buffer.from('SOCISPN1');
const HEADER = 16;

/** What a `SpanFile` needs of each span: its uncompressed range. */
export interface SpanRange {
  readonly outStart: number;
  readonly outEnd: number;
}

export interface SpanFileOptions {
  dir: string;
  /** `sha256:<hex>`: names the files. */
  layerDigest: string;
  spans: readonly SpanRange[];
  /** Bound of the spans kept, in inflated bytes (default 512 MiB). */
  maxBytes?: number | undefined;
  /**
   * How long marks gather before one `fdatasync` persists them all (default 2000 ms; `flush`/`close` do it
   * at once). Each fdatasync forces the file's dirty pages out while spans are still being written, which
   * slows those writes; a crash loses at most this long's marks (the spans are refetched), never more.
   */
  persistDelayMs?: number | undefined;
  /** Punches a hole (default: `fallocate --punch-hole`); a failure leaves the bytes allocated but unmarked. */
  punchHole?: ((path: string, offset: number, length: number) => Promise<void>) | undefined;
}

function fallocatePunch(path: string, offset: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), path], { timeout: 30_000 }, (err) => (err ? reject(err) : resolve()));
  });
}

export class SpanFile {
  readonly path: string;
  readonly presentPath: string;
  /** Uncompressed start of each span, then the stream's end. */
  readonly spanStarts: Float64Array;
  /** 1 = the span's bytes are in the file. */
  readonly present: Uint8Array;
  readonly maxBytes: number;
  readonly #fd: number;
  readonly #presentFd: number;
  readonly #punch: (path: string, offset: number, length: number) => Promise<void>;
  /** Present spans, least recently used first (Map insertion order). */
  readonly #lru = new Map<number, number>();
  /** Holes being punched, by span: a new write of that span waits for its punch. */
  readonly #punching = new Map<number, Promise<void>>();
  /** Spans reserved (counted in #bytes) and not yet written. */
  readonly #reserved = new Set<number>();
  /** Reservations waiting for room held by spans being written. */
  #waiters: Array<() => void> = [];
  #bytes = 0;
  #toMark: number[] = [];
  #marking: Promise<void> | undefined;
  /** Ends the current gathering of marks early (flush, close). */
  #hurry: (() => void) | undefined;
  readonly #persistDelay: number;
  #closed = false;
  /** Holes punched (for tests and stats). */
  evictions = 0;

  constructor(opts: SpanFileOptions) {
    const n = opts.spans.length;
    this.spanStarts = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) this.spanStarts[i] = (opts.spans[i] as SpanRange).outStart;
    this.spanStarts[n] = n > 0 ? (opts.spans[n - 1] as SpanRange).outEnd : 0;
    this.present = new Uint8Array(new SharedArrayBuffer(Math.max(1, n))).subarray(0, n);
    this.maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
    this.#punch = opts.punchHole ?? fallocatePunch;
    this.#persistDelay = Math.max(0, opts.persistDelayMs ?? 2000);
    mkdirSync(opts.dir, { recursive: true });
    const hex = opts.layerDigest.replace(/^sha256:/, '').replace(/[^0-9a-zA-Z]/g, '_');
    this.path = join(opts.dir, `${hex}.tar`);
    this.presentPath = join(opts.dir, `${hex}.present`);
    const rw = constants.O_RDWR | constants.O_CREAT;
    this.#fd = openSync(this.path, rw, 0o644);
    this.#presentFd = openSync(this.presentPath, rw, 0o644);
    const total = this.spanStarts[n] as number;
    const size = fstatSync(this.#fd).size;
    if (size < total) ftruncateSync(this.#fd, total); // sparse: holes cost nothing
    this.#loadMarks(Math.min(size, total));
  }

  /** Trusts the persisted marks of this layout whose spans lie within the file's old length. */
  #loadMarks(oldSize: number): void {
    const n = this.present.length;
    const head = Buffer.concat([MAGIC, createHash('sha256').update(new Uint8Array(this.spanStarts.buffer)).digest().subarray(0, HEADER - MAGIC.length)]);
    const buf = Buffer.alloc(HEADER + n);
    const got = readSync(this.#presentFd, buf, 0, buf.length, 0);
    const same = got === buf.length && fstatSync(this.#presentFd).size === buf.length && buf.subarray(0, HEADER).equals(head);
    if (!same) {
      ftruncateSync(this.#presentFd, 0);
      const fresh = Buffer.alloc(HEADER + n);
      head.copy(fresh);
      writeSync(this.#presentFd, fresh, 0, fresh.length, 0);
      return;
    }
    for (let i = 0; i < n; i++) {
      if (buf[HEADER + i] !== 1 || (this.spanStarts[i + 1] as number) > oldSize) continue;
      this.present[i] = 1;
      const len = this.spanLength(i);
      this.#lru.set(i, len);
      this.#bytes += len;
    }
  }

  get spanCount(): number {
    return this.present.length;
  }

  /** Inflated bytes of the spans present or reserved. */
  get bytes(): number {
    return this.#bytes;
  }

  spanLength(id: number): number {
    return (this.spanStarts[id + 1] as number) - (this.spanStarts[id] as number);
  }

  /** Whether a span of this length can be kept at all. */
  fits(id: number): boolean {
    return this.spanLength(id) <= this.maxBytes;
  }

  /**
   * Makes room for span `id` before it is written (by this thread or another): evicts least recently used
   * spans until it fits and waits for any punch of `id` itself. When the room is held by spans being
   * written, `wait` waits for them to land (then evicts them); else it gives up. False if the span does not
   * fit (larger than the bound, or room held and not waiting) or the file is closed.
   */
  async reserve(id: number, wait = true): Promise<boolean> {
    if (this.#closed || !this.fits(id)) return false;
    const len = this.spanLength(id);
    for (;;) {
      if (this.present[id] === 1 || this.#reserved.has(id)) return true;
      while (this.#bytes + len > this.maxBytes && this.#lru.size > 0) {
        const [oldest] = this.#lru.keys();
        this.evict(oldest as number);
      }
      if (this.#bytes + len <= this.maxBytes) break;
      if (!wait || this.#closed) return false; // the rest is being written: the bound holds
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    this.#reserved.add(id);
    this.#bytes += len;
    await this.#punching.get(id);
    if (this.#closed) this.release(id);
    return !this.#closed;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }

  /** Gives back the room of a reserved span that will not be written. */
  release(id: number): void {
    if (this.#reserved.delete(id)) this.#bytes -= this.spanLength(id);
    this.#wake();
  }

  /** Writes span `id` (after `reserve`) and marks it present. */
  async write(id: number, data: Uint8Array): Promise<void> {
    if (data.length !== this.spanLength(id)) throw new RangeError(`span ${id}: ${data.length} bytes, expected ${this.spanLength(id)}`);
    let done = 0;
    while (done < data.length) {
      const n = await new Promise<number>((resolve, reject) => {
        write(this.#fd, data, done, data.length - done, (this.spanStarts[id] as number) + done, (err, w) => (err ? reject(err) : resolve(w)));
      });
      if (n <= 0) throw new Error(`short write of span ${id}`);
      done += n;
    }
    this.markWritten(id);
  }

  /** Marks span `id` present once its bytes are in the file (written here or by another thread). */
  markWritten(id: number): void {
    if (this.#closed || this.present[id] === 1) return;
    this.present[id] = 1;
    const len = this.spanLength(id);
    this.#lru.set(id, len);
    if (!this.#reserved.delete(id)) this.#bytes += len;
    this.#wake();
    this.#toMark.push(id);
    this.#marking ??= this.#persistMarks();
  }

  /** fdatasync the tar file, then persist the marks of spans written before it (still present). */
  async #persistMarks(): Promise<void> {
    await new Promise<void>((r) => {
      // gather the marks written meanwhile; the timer is unref'd (close and flush end the wait themselves)
      const t = this.#persistDelay > 0 ? setTimeout(r, this.#persistDelay) : setImmediate(r);
      if (this.#persistDelay > 0) (t as NodeJS.Timeout).unref();
      this.#hurry = () => {
        if (this.#persistDelay > 0) clearTimeout(t as NodeJS.Timeout);
        else clearImmediate(t as NodeJS.Immediate);
        r();
      };
    });
    this.#hurry = undefined;
    const ids = this.#toMark;
    this.#toMark = [];
    try {
      await new Promise<void>((resolve, reject) => fdatasync(this.#fd, (err) => (err ? reject(err) : resolve())));
      if (!this.#closed) for (const id of ids) if (this.present[id] === 1) writeSync(this.#presentFd, ONE, 0, 1, HEADER + id);
    } catch {
      // unmarked on disk: the span is refetched by a later process
    } finally {
      this.#marking = undefined;
      if (this.#toMark.length > 0 && !this.#closed) this.#marking = this.#persistMarks();
    }
  }

  /** Waits until every mark set so far is persisted (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.#marking !== undefined) {
      this.#hurry?.();
      await this.#marking;
    }
  }

  /** Moves spans `first..last` to the most recently used end. */
  touch(first: number, last: number): void {
    for (let id = first; id <= last; id++) {
      const len = this.#lru.get(id);
      if (len === undefined) continue;
      this.#lru.delete(id);
      this.#lru.set(id, len);
    }
  }

  /** Drops span `id`: unmarked in memory and on disk first, then its hole punched. */
  evict(id: number): void {
    const len = this.#lru.get(id);
    if (len === undefined) return;
    this.#lru.delete(id);
    this.present[id] = 0;
    this.#bytes -= len;
    this.evictions++;
    try {
      writeSync(this.#presentFd, ZERO, 0, 1, HEADER + id);
    } catch {
      // the in-memory mark is what this process trusts; a later open also checks the header
    }
    const prev = this.#punching.get(id) ?? Promise.resolve();
    const p = prev.then(() => this.#punch(this.path, this.spanStarts[id] as number, len)).catch(() => undefined).finally(() => {
      if (this.#punching.get(id) === p) this.#punching.delete(id);
    });
    this.#punching.set(id, p);
  }

  /** Whether every span of `first..last` is present. */
  has(first: number, last: number): boolean {
    for (let id = first; id <= last; id++) if (this.present[id] !== 1) return false;
    return true;
  }

  /**
   * Copies tar-stream bytes `[offset, offset + length)` into `into` with a synchronous pread (page cache)
   * and returns true if spans `first..last` covering them are present; false (nothing promised) otherwise.
   */
  readInto(offset: number, length: number, into: Uint8Array, first: number, last: number): boolean {
    if (this.#closed || !this.has(first, last)) return false;
    let done = 0;
    while (done < length) {
      const n = readSync(this.#fd, into, done, length - done, offset + done);
      if (n <= 0) return false;
      done += n;
    }
    if (!this.has(first, last)) return false;
    this.touch(first, last);
    return true;
  }

  async close(): Promise<void> {
    await this.flush();
    await Promise.allSettled([...this.#punching.values()]);
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
    closeSync(this.#fd);
    closeSync(this.#presentFd);
  }
}

const ONE = Uint8Array.of(1);
const ZERO = Uint8Array.of(0);
