/**
 * The span store of one layer (soci-format.md §6, §7.1): a span's compressed range `[start, end)` is fetched
 * from the blob once, checked against `span_digests[id]` (a mismatch is refetched once, then it is a
 * `CorruptLayer`), inflated and kept. With a cache dir the inflated spans live in one sparse file per layer
 * (`SpanFile`: the tar stream at its own offsets, presence bytes a native FUSE server can read, bounded,
 * persisted across processes); without one, or for a span the file cannot take, in a small memory LRU.
 * Nothing is marked present before it is verified and written. Concurrent requests for one span share one
 * fetch. `ensure(first, last)` makes spans present; `readCached` copies any range of present spans with
 * one synchronous pread (page cache), so a small read never re-reads a whole span; `read` does both.
 * `prefetch(ids)` fetches a run of adjacent spans in one range request (each still checked against its own
 * digest); with a `SpanInflater` its spans are checked, inflated and written to the sparse file on the
 * worker threads, in parallel, so the inflated bytes never cross threads, and each span is marked present
 * (its waiters released) as soon as it lands, not when its whole run has. `ensure` of a span still queued
 * for a worker moves it to the head of the queue. A span a reader waits on that no one is fetching
 * (`ensure`, `getSpan`) is fetched alone and done on this thread: no thread hop on that path.
 */
import { LRUCache } from 'lru-cache';
import { CorruptLayer } from '../../oci/errors.js';
import type { RangeSource, ZtocReader } from '../../indexer/reader.js';
import type { InflateOutcome, InflatePart, SpanInflater } from './span-inflater.js';
import { SpanFile } from './span-file.js';

export interface SpanFetcherOptions {
  reader: ZtocReader;
  source: RangeSource;
  /** `sha256:<hex>` of the layer blob: names the span file. */
  layerDigest: string;
  /** Directory of the layer's sparse span file; none means memory only. Created if missing. */
  cacheDir?: string;
  /** Bound of this layer's span file in inflated bytes (default 512 MiB); least recently used spans go first. */
  maxDiskBytes?: number;
  /** Spans kept in memory when there is no span file, or a span does not fit it (default 16). */
  memorySpans?: number;
  /** Bound of the inflated bytes kept in memory (default 128 MiB). */
  memoryBytes?: number;
  /** Checks and inflates prefetched gzip spans off this thread; without one (or when it fails) this thread does. */
  inflater?: SpanInflater | undefined;
  /** Punches a span's hole at eviction (tests); default `fallocate --punch-hole`. */
  punchHole?: ((path: string, offset: number, length: number) => Promise<void>) | undefined;
  /** How long presence marks gather before one fdatasync persists them (`SpanFileOptions`; default 2000 ms). */
  persistDelayMs?: number | undefined;
}

export interface SpanFetcherStats {
  fetches: number;
  compressedBytes: number;
  digestMismatches: number;
  memoryHits: number;
  diskHits: number;
}

type Settle = { resolve: (b: Uint8Array | undefined) => void; reject: (e: unknown) => void };

export class SpanFetcher {
  readonly reader: ZtocReader;
  readonly stats: SpanFetcherStats = { fetches: 0, compressedBytes: 0, digestMismatches: 0, memoryHits: 0, diskHits: 0 };
  /** The layer's sparse span file, when there is a cache dir. */
  readonly file: SpanFile | undefined;
  readonly #source: RangeSource;
  readonly #inflater: SpanInflater | undefined;
  readonly #memory: LRUCache<number, Uint8Array>;
  /** Spans being fetched: resolve with the inflated bytes, or undefined when another thread wrote them. */
  readonly #inflight = new Map<number, Promise<Uint8Array | undefined>>();
  #closed = false;

  constructor(opts: SpanFetcherOptions) {
    this.reader = opts.reader;
    this.#source = opts.source;
    this.#inflater = opts.reader.ztoc.compressionAlgorithm === 'gzip' ? opts.inflater : undefined;
    this.#memory = new LRUCache({
      max: Math.max(1, opts.memorySpans ?? 16),
      maxSize: Math.max(1, opts.memoryBytes ?? 128 * 1024 * 1024),
      sizeCalculation: (v) => Math.max(1, v.length),
    });
    this.file = opts.cacheDir === undefined ? undefined : new SpanFile({
      dir: opts.cacheDir, layerDigest: opts.layerDigest, spans: opts.reader.spans, maxBytes: opts.maxDiskBytes, punchHole: opts.punchHole, persistDelayMs: opts.persistDelayMs,
    });
  }

  /** Whether span `id` is stored (span file or memory): readable with no fetch. */
  isPresent(id: number): boolean {
    return this.file?.present[id] === 1 || this.#memory.has(id);
  }

  /** Free room of the span file in bytes (0 without one). */
  room(): number {
    return this.file === undefined ? 0 : Math.max(0, this.file.maxBytes - this.file.bytes);
  }

  /** Whether span `id` is stored or being fetched. */
  has(id: number): boolean {
    return this.isPresent(id) || this.#inflight.has(id);
  }

  #start(id: number): Promise<Uint8Array | undefined> {
    if (this.#closed) return Promise.reject(new Error(`span ${id}: span store closed`));
    let p = this.#inflight.get(id);
    if (p === undefined) {
      p = this.#load(id).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, p);
    }
    return p;
  }

  /** Makes spans `first..last` present (fetching the missing ones, each once); rejects if one cannot be had. */
  async ensure(first: number, last: number): Promise<void> {
    const waits: Array<Promise<unknown>> = [];
    for (let id = Math.max(0, first); id <= last && id < this.reader.spans.length; id++) {
      if (this.isPresent(id)) this.stats.diskHits++;
      else {
        if (this.#inflight.has(id)) this.#inflater?.hurry(this.reader, id); // a reader waits on it
        waits.push(this.#start(id));
      }
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  /** The inflated bytes of span `id`. */
  async getSpan(id: number): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      const hot = this.#memory.get(id);
      if (hot !== undefined) {
        this.stats.memoryHits++;
        return hot;
      }
      const stored = this.#fromFile(id);
      if (stored !== undefined) {
        this.stats.diskHits++;
        return stored;
      }
      const data = await this.#start(id);
      if (data !== undefined) return data;
      const again = this.#fromFile(id);
      if (again !== undefined) return again;
      if (attempt > 2) throw new Error(`span ${id} was evicted as soon as it was written`);
    }
  }

  #fromFile(id: number): Uint8Array | undefined {
    const f = this.file;
    if (f === undefined || f.present[id] !== 1) return undefined;
    const out = new Uint8Array(f.spanLength(id));
    return f.readInto(f.spanStarts[id] as number, out.length, out, id, id) ? out : undefined;
  }

  /** Span `id` if it is stored (no fetch). */
  peek(id: number): Uint8Array | undefined {
    return this.#memory.get(id) ?? this.#fromFile(id);
  }

  /**
   * Copies `[offset, offset + length)` into `into` and returns true when every span it touches is stored;
   * false (nothing promised) otherwise.
   */
  readCached(offset: number, length: number, into: Uint8Array): boolean {
    if (length === 0) return true;
    const first = this.reader.spanAt(offset);
    const last = this.reader.spanAt(offset + length - 1);
    if (this.file?.readInto(offset, length, into, first, last) === true) return true;
    const parts: Uint8Array[] = [];
    for (let id = first; id <= last; id++) {
      const data = this.#memory.get(id);
      if (data === undefined) return false;
      parts.push(data);
    }
    let filled = 0;
    for (let id = first; id <= last; id++) {
      const span = this.reader.spans[id];
      const data = parts[id - first];
      if (span === undefined || data === undefined) return false;
      const from = Math.max(offset, span.outStart) - span.outStart;
      const to = Math.min(offset + length, span.outEnd) - span.outStart;
      into.set(data.subarray(from, to), filled);
      filled += to - from;
    }
    return true;
  }

  /** The uncompressed bytes [offset, offset + length) of the layer's tar stream. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    await this.ensure(this.reader.spanAt(offset), this.reader.spanAt(offset + length - 1));
    if (this.readCached(offset, length, out)) return out;
    return this.reader.readRange(this.#source, offset, length, (id) => this.getSpan(id));
  }

  /**
   * Fetches the spans of `ids` (ascending, adjacent) that are not stored and not in flight, as one range
   * request for the first adjacent run; resolves when they are stored. Errors are left to a later read.
   * `onFetched` is called once the range request has ended (or at once when there is nothing to fetch).
   */
  async prefetch(ids: readonly number[], onFetched?: () => void): Promise<void> {
    const want = ids.filter((id) => id >= 0 && id < this.reader.spans.length && !this.has(id));
    if (want.length === 0 || this.#closed) {
      onFetched?.();
      return;
    }
    let n = 1;
    while (n < want.length && want[n] === (want[n - 1] as number) + 1) n++;
    const run = want.slice(0, n);
    const settle = new Map<number, Settle>();
    for (const id of run) {
      const p = new Promise<Uint8Array | undefined>((resolve, reject) => settle.set(id, { resolve, reject }));
      const tracked: Promise<Uint8Array | undefined> = p.finally(() => {
        if (this.#inflight.get(id) === tracked) this.#inflight.delete(id);
      });
      tracked.catch(() => undefined);
      this.#inflight.set(id, tracked);
    }
    const first = this.reader.spans[run[0] as number];
    const last = this.reader.spans[run[run.length - 1] as number];
    let all: Uint8Array | undefined;
    try {
      if (first !== undefined && last !== undefined) all = await this.#source.read(first.start, last.end);
      if (all !== undefined) {
        this.stats.fetches++;
        this.stats.compressedBytes += all.length;
      }
    } catch {
      all = undefined;
    }
    onFetched?.();
    if (all !== undefined && first !== undefined && last !== undefined && all.length !== last.end - first.start) all = undefined;
    const stores: Array<Promise<void>> = [];
    // Each span is settled as soon as it lands, not when its whole batch has.
    const land = (i: number, o: Uint8Array | 'written' | undefined): void => {
      const id = run[i] as number;
      const s = settle.get(id) as Settle;
      if (o === 'written') {
        this.file?.markWritten(id);
        s.resolve(undefined);
      } else if (o !== undefined) {
        stores.push(this.#store(id, o).then(() => s.resolve(o), s.reject));
      } else {
        // A failed or mismatched span falls back to the checked single-span path.
        this.file?.release(id);
        this.#inflight.delete(id);
        this.#start(id).then(s.resolve, s.reject);
      }
    };
    if (all !== undefined && first !== undefined) await this.#inflateBatch(all, first.start, run, land);
    else run.forEach((_, i) => land(i, undefined));
    await Promise.all(stores);
  }

  /**
   * Checks and inflates each span of `ids` (adjacent, `buf` holding their compressed bytes from blob
   * offset `base`) and calls `land(i, outcome)` once per span as soon as it is done: its bytes, 'written'
   * when a worker wrote them to the span file (reserved here first), or undefined where it did not match
   * its digest or failed. Spans the workers could not take are done on this thread.
   */
  async #inflateBatch(buf: Uint8Array, base: number, ids: readonly number[], land: (i: number, o: Uint8Array | 'written' | undefined) => void): Promise<void> {
    const spans = ids.map((id) => this.reader.spans[id]);
    const landed = new Array<boolean>(ids.length).fill(false);
    const once = (i: number, o: Uint8Array | 'written' | undefined): void => {
      if (landed[i] === true) return;
      landed[i] = true;
      land(i, o);
    };
    if (this.#inflater !== undefined && spans.every((s) => s !== undefined)) {
      const f = this.file;
      const toFile: boolean[] = [];
      for (const id of ids) toFile.push(f !== undefined && (await f.reserve(id, false))); // never wait on itself
      const parts = ids.map((id, i): InflatePart => {
        const s = spans[i] as (typeof spans)[number] & object;
        const part: InflatePart = { id, from: s.start - base, to: s.end - base, digest: s.digest, length: s.outEnd - s.outStart };
        if (toFile[i] === true) part.outOffset = s.outStart;
        return part;
      });
      const each = (i: number, o: InflateOutcome): void => {
        if (!o.ok) return once(i, undefined);
        if (o.data === undefined) return once(i, toFile[i] === true ? 'written' : undefined);
        if (toFile[i] === true) f?.release(ids[i] as number);
        once(i, o.data);
      };
      const ok = await this.#inflater.inflate(this.reader, () => this.reader.ztoc.checkpoints, buf, parts, f?.path, each).then(() => true, () => false);
      if (ok) return;
      ids.forEach((id, i) => landed[i] !== true && toFile[i] === true && f?.release(id));
    }
    ids.forEach((id, i) => {
      if (landed[i] === true) return;
      const s = spans[i];
      if (s === undefined) return once(i, undefined);
      const part = buf.subarray(s.start - base, s.end - base);
      if (!this.reader.verifySpan(id, part)) return once(i, undefined);
      try {
        once(i, this.reader.decompressSpan(id, part));
      } catch {
        once(i, undefined);
      }
    });
  }

  async #load(id: number): Promise<Uint8Array> {
    const span = this.reader.spans[id];
    if (span === undefined) throw new RangeError(`span ${id} outside 0..${this.reader.spans.length - 1}`);
    const want = span.outEnd - span.outStart;
    let data: Uint8Array | undefined;
    for (let attempt = 0; attempt < 2 && data === undefined; attempt++) {
      const got = await this.#source.read(span.start, span.end);
      this.stats.fetches++;
      this.stats.compressedBytes += got.length;
      if (got.length !== span.end - span.start) {
        this.stats.digestMismatches++;
        continue;
      }
      if (this.reader.verifySpan(id, got)) data = this.reader.decompressSpan(id, got);
      else this.stats.digestMismatches++;
    }
    if (data === undefined) throw new CorruptLayer(`span ${id} does not match its digest ${span.digest} after a refetch`, span.start);
    if (data.length !== want) throw new CorruptLayer(`span ${id} inflated to ${data.length} bytes, expected ${want}`, span.start);
    await this.#store(id, data);
    return data;
  }

  /** Keeps verified span bytes: in the span file when it takes them, else in memory. */
  async #store(id: number, data: Uint8Array): Promise<void> {
    const f = this.file;
    if (f !== undefined && (await f.reserve(id))) {
      if (f.present[id] === 1) return;
      try {
        await f.write(id, data);
        return;
      } catch {
        f.release(id); // a full or broken disk only costs memory
      }
    }
    this.#memory.set(id, data);
  }

  /** Persists presence marks and closes the span file (spans in flight are dropped). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.file?.close();
  }
}
