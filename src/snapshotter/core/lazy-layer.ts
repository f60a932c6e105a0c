/**
 * One lazily served layer, shared by every mount of the same layer digest: its zTOC, its `SpanFetcher`
 * (verified, inflated spans in one bounded sparse file per layer, `contentFile`, that a native FUSE server
 * reads directly; concurrent reads of one span fetch once), read-ahead and two fillers. Read-ahead works on
 * spans, so it sees the same thing whether reads come through `read`/`readCached` (every read) or through
 * `contentFile.ensure` (only misses): a read reaching span i while span i−1 was just read or filled by
 * read-ahead continues a forward stream and fetches the next PREFETCH_SPANS spans (PREFETCH_BATCH adjacent
 * spans per range request, the PREFETCH_FIRST right after the reader in a request of their own so they land
 * first; inflated and written on the `SpanInflater` workers). A walk that reaches `scanSpans` distinct
 * spans (and at least 32 MiB of them) within `scanWindowMs` (a full scan, `tar c`, `find | xargs cat`) starts the
 * bulk fill: the rest of the layer, from just past the reader, BULK_BATCH spans per request, at most
 * BULK_FETCHES requests at a time (so the batch next to the reader arrives first) and up to BULK_DEPTH
 * batches fetched and not yet inflated, which keeps every worker busy (inflating is the fill's bottleneck); read-ahead pauses
 * while it runs. An on-demand miss is claimed before read-ahead looks at it, so it never joins a batch:
 * it is fetched alone and inflated on this thread, or, if a batch already has it, hurried to the head of
 * the workers' queue. The timed
 * filler fetches one missing span every `bgFetchPeriodMs` once no on-demand read has come for `bgQuietMs`.
 * Both fillers need a span file and only fill its free room (they never evict); read-ahead may evict.
 *
 * soci-snapshotter also checks each file's tar header on its first read; here the zTOC comes from a SOCI
 * index fetched by digest and every span is checked against its digest, so that check is skipped.
 */
import type { RangeSource, ZtocReader } from '../../indexer/reader.js';
import type { LayerContent, LayerContentFile } from '../fs/index.js';
import { SpanFetcher, type SpanInflater } from '../remote/index.js';
import type { FetchKind, SnapshotterMetrics } from './metrics.js';

/** Spans kept fetched ahead of a forward stream. */
const PREFETCH_SPANS = 16;
/** Adjacent spans fetched in one range request by read-ahead. */
const PREFETCH_BATCH = 8;
/** The read-ahead request of the spans right after the reader is this small: the reader needs them first. */
const PREFETCH_FIRST = 2;
/** Adjacent spans per range request of the bulk fill, and batches fetched or being fetched and not yet inflated. */
const BULK_BATCH = 8;
const BULK_DEPTH = 4;
/** Range requests of the bulk fill outstanding at once. */
const BULK_FETCHES = 2;
/** The default scan threshold also needs this many uncompressed bytes of distinct spans. */
const SCAN_BYTES = 32 * 1024 * 1024;
/** After a failed bulk batch, the bulk fill waits this long before it may start again. */
const BULK_BACKOFF_MS = 10_000;

export interface LazyLayerOptions {
  layerDigest: string;
  reader: ZtocReader;
  source: RangeSource;
  metrics: SnapshotterMetrics;
  /** Span cache dir (shared by all layers; files are named by layer digest). */
  spanCacheDir?: string | undefined;
  maxDiskBytes?: number | undefined;
  /** Spans kept in memory when there is no span file (default 256, at most 128 MiB). */
  memorySpans?: number | undefined;
  /** 0 disables the timed background filler (default 500). */
  bgFetchPeriodMs?: number | undefined;
  /** Default 30000. */
  bgQuietMs?: number | undefined;
  /** Distinct spans read within `scanWindowMs` that start the bulk fill (default max(8, spans/16, 32 MiB of spans); 0 never). */
  scanSpans?: number | undefined;
  /** Default 5000. */
  scanWindowMs?: number | undefined;
  /** Checks and inflates spans on a worker thread (shared by layers). */
  inflater?: SpanInflater | undefined;
  /** Punches a span's hole at eviction (tests); default `fallocate --punch-hole`. */
  punchHole?: ((path: string, offset: number, length: number) => Promise<void>) | undefined;
  /** How long presence marks gather before one fdatasync persists them (default 2000 ms). */
  persistDelayMs?: number | undefined;
}

export class LazyLayer implements LayerContent {
  readonly layerDigest: string;
  readonly fetcher: SpanFetcher;
  readonly contentFile: LayerContentFile | undefined;
  readonly #reader: ZtocReader;
  readonly #metrics: SnapshotterMetrics;
  readonly #period: number;
  readonly #quiet: number;
  readonly #scanSpans: number;
  readonly #scanWindow: number;
  /** Who asked first for a span now being fetched. */
  readonly #kind = new Map<number, FetchKind>();
  readonly #startToId = new Map<number, number>();
  /** Spans reached by reads, with when (pruned to the scan window). */
  readonly #touched = new Map<number, number>();
  /** Spans filled by read-ahead and not yet reached by a read. */
  readonly #prefetched = new Set<number>();
  #demandInFlight = 0;
  #lastDemand = Date.now();
  #frontier = 0;
  #timer: NodeJS.Timeout | undefined;
  #bgCursor = 0;
  #bgBusy = false;
  #bulk: Promise<void> | undefined;
  #bulkBlockedUntil = 0;
  #done = false;
  #closed = false;
  refs = 0;

  constructor(opts: LazyLayerOptions) {
    this.layerDigest = opts.layerDigest;
    this.#reader = opts.reader;
    this.#metrics = opts.metrics;
    this.#period = opts.bgFetchPeriodMs ?? 500;
    this.#quiet = opts.bgQuietMs ?? 30_000;
    const spans = opts.reader.spans;
    const avgSpan = spans.length > 0 ? Math.max(1, ((spans[spans.length - 1]?.outEnd ?? 0) - (spans[0]?.outStart ?? 0)) / spans.length) : 1;
    // A scan is many spans AND many bytes: with small spans a program's start (python's imports) touches dozens
    // of spans while reading little of each, and must not pull in the whole layer.
    this.#scanSpans = opts.scanSpans ?? Math.max(8, Math.ceil(spans.length / 16), Math.ceil(SCAN_BYTES / avgSpan));
    this.#scanWindow = opts.scanWindowMs ?? 5000;
    for (const s of opts.reader.spans) if (!this.#startToId.has(s.start)) this.#startToId.set(s.start, s.id);
    const counted: RangeSource = {
      read: async (start, end) => {
        const id = this.#startToId.get(start) ?? -1;
        const kind = this.#kind.get(id) ?? 'demand';
        const t0 = performance.now();
        try {
          const bytes = await opts.source.read(start, end);
          this.#metrics.emit({ type: 'span', layerDigest: this.layerDigest, spanId: id, kind, compressedBytes: bytes.length, ms: performance.now() - t0 });
          return bytes;
        } catch (err) {
          this.#metrics.emit({ type: 'span-error', layerDigest: this.layerDigest, spanId: id, kind, error: (err as Error).message });
          throw err;
        }
      },
    };
    this.fetcher = new SpanFetcher({
      reader: opts.reader,
      source: counted,
      layerDigest: opts.layerDigest,
      ...(opts.spanCacheDir !== undefined ? { cacheDir: opts.spanCacheDir } : {}),
      ...(opts.maxDiskBytes !== undefined ? { maxDiskBytes: opts.maxDiskBytes } : {}),
      memorySpans: opts.memorySpans ?? 256,
      inflater: opts.inflater,
      punchHole: opts.punchHole,
      persistDelayMs: opts.persistDelayMs,
    });
    const f = this.fetcher.file;
    this.contentFile = f === undefined ? undefined : { path: f.path, spanStarts: f.spanStarts, present: f.present, ensure: (first, last) => this.ensure(first, last) };
    if (this.#period > 0) {
      this.#timer = setInterval(() => void this.#backgroundTick(), this.#period);
      this.#timer.unref();
    }
  }

  get spanCount(): number {
    return this.#reader.spans.length;
  }

  /** Runs `fn` with spans `ids` counted as `kind` where no one claimed them yet. */
  async #as<T>(kind: FetchKind, first: number, last: number, fn: () => Promise<T>): Promise<T> {
    const mine: number[] = [];
    for (let id = first; id <= last; id++) {
      if (!this.#kind.has(id) && !this.fetcher.has(id)) {
        this.#kind.set(id, kind);
        mine.push(id);
      }
    }
    try {
      return await fn();
    } finally {
      for (const id of mine) if (this.#kind.get(id) === kind) this.#kind.delete(id);
    }
  }

  /** Makes spans `first..last` present, as an on-demand read (the native FUSE server's misses). */
  async ensure(first: number, last: number): Promise<void> {
    const lo = Math.max(0, first);
    const hi = Math.min(last, this.#reader.spans.length - 1);
    if (hi < lo) return;
    this.#demandInFlight++;
    this.#lastDemand = Date.now();
    try {
      // Claimed as a demand first (each missing span fetched alone, inflated here), then read-ahead: so
      // read-ahead never takes the very spans a reader waits on into a batch.
      const wait = this.#as('demand', lo, hi, () => this.fetcher.ensure(lo, hi));
      this.#access(lo, hi);
      await wait;
    } finally {
      this.#demandInFlight--;
      this.#lastDemand = Date.now();
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const first = this.#reader.spanAt(offset);
    const last = this.#reader.spanAt(offset + length - 1);
    this.#demandInFlight++;
    this.#lastDemand = Date.now();
    const t0 = performance.now();
    try {
      const reading = this.#as('demand', first, last, () => this.fetcher.read(offset, length));
      this.#access(first, last);
      const data = await reading;
      this.#metrics.emit({ type: 'read', layerDigest: this.layerDigest, bytes: length, ms: performance.now() - t0 });
      return data;
    } finally {
      this.#demandInFlight--;
      this.#lastDemand = Date.now();
    }
  }

  readCached(offset: number, length: number, into: Uint8Array): boolean {
    if (length === 0) return true;
    if (!this.fetcher.readCached(offset, length, into)) return false;
    this.#lastDemand = Date.now();
    this.#access(this.#reader.spanAt(offset), this.#reader.spanAt(offset + length - 1));
    return true;
  }

  /** Records a read of spans `first..last`: read-ahead for a forward stream, the bulk fill for a scan. */
  #access(first: number, last: number): void {
    const now = Date.now();
    let fresh = false;
    // When span id − 1 was read before this read (one read across a span boundary is no stream).
    let prevSeen = this.#touched.get(first - 1);
    for (let id = first; id <= last; id++) {
      const seen = this.#touched.get(id);
      const prev = prevSeen;
      prevSeen = seen;
      this.#touched.set(id, now);
      const wasPrefetched = this.#prefetched.delete(id);
      if (seen !== undefined && now - seen < this.#scanWindow) continue;
      fresh = true;
      let forward = wasPrefetched || (prev !== undefined && now - prev < this.#scanWindow);
      // Spans read ahead and skipped over (read without a miss through the native server) count as read.
      for (let p = id - 1; p >= 0 && this.#prefetched.delete(p); p--) {
        this.#touched.set(p, now);
        forward = true;
      }
      if (forward) this.#readAhead(id);
    }
    this.#frontier = last;
    if (fresh) this.#checkScan(now);
  }

  #checkScan(now: number): void {
    for (const [id, t] of this.#touched) if (now - t >= this.#scanWindow) this.#touched.delete(id);
    if (this.#scanSpans > 0 && this.#touched.size >= this.#scanSpans) this.#startBulk();
  }

  #readAhead(from: number): void {
    if (this.#bulk !== undefined) return; // the bulk fill reads ahead of the reader already
    const n = this.#reader.spans.length;
    let batch: number[] = [];
    const flush = (): void => {
      if (batch.length === 0) return;
      const ids = batch;
      batch = [];
      for (const id of ids) this.#prefetched.add(id);
      void this.#as('prefetch', ids[0] as number, ids[ids.length - 1] as number, () => this.fetcher.prefetch(ids)).catch(() => undefined);
    };
    // Read-ahead may evict, but never more than half the span file's bound.
    let budget = (this.fetcher.file?.maxBytes ?? Infinity) / 2;
    for (let next = from + 1; next <= from + PREFETCH_SPANS && next < n; next++) {
      const s = this.#reader.spans[next];
      budget -= s === undefined ? 0 : s.outEnd - s.outStart;
      if (budget < 0) break;
      if (this.fetcher.has(next)) {
        flush();
        continue;
      }
      batch.push(next);
      if (batch.length >= (batch[0] === from + 1 ? PREFETCH_FIRST : PREFETCH_BATCH)) flush();
    }
    flush();
  }

  /**
   * The next `max` adjacent spans neither stored nor in flight, searching forward from the reader, that fit
   * the span file's free room: the fillers never evict (with a layer larger than its bound they would churn).
   */
  #nextMissing(max: number): number[] {
    const n = this.#reader.spans.length;
    let room = this.fetcher.room();
    const fits = (id: number): boolean => {
      const s = this.#reader.spans[id];
      const len = s === undefined ? 0 : s.outEnd - s.outStart;
      if (len > room) return false;
      room -= len;
      return true;
    };
    for (let k = 0; k < n; k++) {
      const id = (this.#frontier + k) % n;
      if (this.fetcher.has(id)) continue;
      if (!fits(id)) return [];
      const out = [id];
      while (out.length < max && id + out.length < n && !this.fetcher.has(id + out.length) && fits(id + out.length)) out.push(id + out.length);
      return out;
    }
    return [];
  }

  #startBulk(): void {
    if (this.#bulk !== undefined || this.#closed || this.#done || Date.now() < this.#bulkBlockedUntil) return;
    this.#bulk = this.#bulkFill().finally(() => {
      this.#bulk = undefined;
    });
  }

  async #bulkFill(): Promise<void> {
    const running = new Set<Promise<boolean>>();
    const fetching = new Set<Promise<void>>();
    let failed = false;
    while (!this.#closed && !failed) {
      const batch = this.#nextMissing(BULK_BATCH);
      if (batch.length === 0) {
        if (running.size === 0) break;
        failed = !(await Promise.race(running));
        continue;
      }
      const first = batch[0] as number;
      const last = batch[batch.length - 1] as number;
      let fetched!: () => void;
      const arrived = new Promise<void>((r) => (fetched = r));
      const p: Promise<boolean> = this.#as('background', first, last, async () => {
        await this.fetcher.prefetch(batch, fetched);
        return this.fetcher.ensure(first, last).then(() => true, () => false); // waits for single-span retries
      }).finally(() => running.delete(p));
      running.add(p);
      // At most BULK_FETCHES range requests at a time, so the batch next to the reader arrives first (many
      // concurrent requests share the bandwidth and all arrive late); the workers inflate earlier batches.
      const landed: Promise<void> = Promise.race([arrived, p.then(() => undefined, () => undefined)]).finally(() => fetching.delete(landed));
      fetching.add(landed);
      if (fetching.size >= BULK_FETCHES) await Promise.race(fetching);
      if (running.size >= BULK_DEPTH) failed = !(await Promise.race(running));
    }
    const all = await Promise.all(running);
    if (failed || all.includes(false)) this.#bulkBlockedUntil = Date.now() + BULK_BACKOFF_MS;
    else if (!this.#closed) this.#finishIfComplete();
  }

  #finishIfComplete(): void {
    if (this.#done) return;
    for (let id = 0; id < this.#reader.spans.length; id++) if (!this.fetcher.isPresent(id)) return;
    this.#done = true;
    this.#metrics.emit({ type: 'background-done', layerDigest: this.layerDigest });
    this.#stopBackground();
  }

  /** Starts the bulk fill now (a small layer fetched whole right after mount); on-demand misses still go first. */
  fillAll(): void {
    this.#startBulk();
  }

  /** Resolves when the bulk fill (if one runs) has stopped (tests). */
  async settled(): Promise<void> {
    while (this.#bulk !== undefined) await this.#bulk;
  }

  async #backgroundTick(): Promise<void> {
    if (this.#closed || this.#bgBusy || this.#bulk !== undefined || this.#demandInFlight > 0 || Date.now() - this.#lastDemand < this.#quiet) return;
    this.#bgBusy = true;
    try {
      const n = this.#reader.spans.length;
      while (this.#bgCursor < n && this.fetcher.isPresent(this.#bgCursor)) this.#bgCursor++;
      if (this.#bgCursor >= n) {
        this.#bgCursor = 0;
        this.#finishIfComplete();
        return;
      }
      const id = this.#bgCursor;
      const s = this.#reader.spans[id];
      if (s !== undefined && s.outEnd - s.outStart > this.fetcher.room()) return; // full: never evict to fill
      await this.#as('background', id, id, () => this.fetcher.ensure(id, id)).catch(() => undefined); // retried next tick
    } finally {
      this.#bgBusy = false;
    }
  }

  #stopBackground(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Stops the fillers and closes the span file (after the bulk fill stops and marks are persisted). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopBackground();
    await this.settled().catch(() => undefined);
    await this.fetcher.close().catch(() => undefined);
  }
}
