/**
 * One lazily served layer, shared by every mount of the same layer digest: its zTOC tree, its
 * `SpanFetcher` (verified, inflated spans in a bounded disk cache keyed by layer digest; concurrent reads of
 * one span fetch once), read-ahead and a background filler. A read that continues where an earlier read
 * ended (a sequential stream) and ends within `prefetchWindow` of its last span's end starts fetching the
 * next spans (up to PREFETCH_SPANS ahead, PREFETCH_BATCH adjacent spans per range request), so large
 * sequential reads and tar-order walks rarely wait while scattered reads (mmap faults) fetch nothing extra;
 * `readCached` answers reads whose spans are all in memory without a promise. The
 * background filler fetches one missing span every `bgFetchPeriodMs` once no on-demand read has come for
 * `bgQuietMs`, and never while an on-demand read is in flight, so it yields to the reader.
 *
 * soci-snapshotter also checks each file's tar header on its first read; here the zTOC comes from a SOCI
 * index fetched by digest and every span is checked against its digest, so that check is skipped.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { RangeSource, ZtocReader } from '../../indexer/reader.js';
import type { LayerContent } from '../fs/index.js';
import { SpanFetcher, type SpanInflater } from '../remote/index.js';
import type { FetchKind, SnapshotterMetrics } from './metrics.js';

/** A read starting at most this far past an earlier read's end continues a forward stream. */
const SEQUENTIAL_GAP = 64 * 1024;
/** Spans kept fetched ahead of a forward stream. */
const PREFETCH_SPANS = 16;
/** Adjacent spans fetched in one range request by read-ahead. */
const PREFETCH_BATCH = 8;

export interface LazyLayerOptions {
  layerDigest: string;
  reader: ZtocReader;
  source: RangeSource;
  metrics: SnapshotterMetrics;
  /** Span cache dir (shared by all layers; files are named by layer digest). */
  spanCacheDir?: string | undefined;
  maxDiskBytes?: number | undefined;
  memorySpans?: number | undefined;
  /** 0 disables the background filler (default 500). */
  bgFetchPeriodMs?: number | undefined;
  /** Default 30000. */
  bgQuietMs?: number | undefined;
  /** Default 256 KiB. */
  prefetchWindow?: number | undefined;
  /** Checks and inflates spans on a worker thread (shared by layers). */
  inflater?: SpanInflater | undefined;
}

export class LazyLayer implements LayerContent {
  readonly layerDigest: string;
  readonly fetcher: SpanFetcher;
  readonly #reader: ZtocReader;
  readonly #metrics: SnapshotterMetrics;
  readonly #dir: string | undefined;
  readonly #prefix: string;
  readonly #period: number;
  readonly #quiet: number;
  readonly #window: number;
  /** Spans known to be in the cache (memory or disk). */
  readonly #have = new Set<number>();
  /** Who asked first for a span now being fetched. */
  readonly #kind = new Map<number, FetchKind>();
  readonly #startToId = new Map<number, number>();
  /** End offsets of recent reads: a read starting at one of them is part of a sequential stream. */
  readonly #recentEnds = new Set<number>();
  #demandInFlight = 0;
  #lastDemand = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #bgCursor = 0;
  #bgBusy = false;
  #closed = false;
  refs = 0;

  constructor(opts: LazyLayerOptions) {
    this.layerDigest = opts.layerDigest;
    this.#reader = opts.reader;
    this.#metrics = opts.metrics;
    this.#dir = opts.spanCacheDir;
    this.#prefix = opts.layerDigest.replace(/^sha256:/, '').replace(/[^0-9a-zA-Z]/g, '_');
    this.#period = opts.bgFetchPeriodMs ?? 500;
    this.#quiet = opts.bgQuietMs ?? 30_000;
    this.#window = opts.prefetchWindow ?? 512 * 1024;
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
    });
    if (this.#period > 0) {
      this.#timer = setInterval(() => void this.#backgroundTick(), this.#period);
      this.#timer.unref();
    }
  }

  get spanCount(): number {
    return this.#reader.spans.length;
  }

  #span(id: number, kind: FetchKind): Promise<Uint8Array> {
    if (!this.#kind.has(id)) this.#kind.set(id, kind);
    const p = this.fetcher.getSpan(id);
    p.then(() => this.#have.add(id), () => undefined).finally(() => this.#kind.delete(id));
    return p;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#demandInFlight++;
    this.#lastDemand = Date.now();
    const t0 = performance.now();
    try {
      const data = await this.#reader.readRange({ read: () => Promise.reject(new Error('unused')) }, offset, length, (id) => this.#span(id, 'demand'));
      this.#metrics.emit({ type: 'read', layerDigest: this.layerDigest, bytes: length, ms: performance.now() - t0 });
      this.#track(offset, length);
      return data;
    } finally {
      this.#demandInFlight--;
      this.#lastDemand = Date.now();
    }
  }

  readCached(offset: number, length: number, into: Uint8Array): boolean {
    if (length === 0) return true;
    const first = this.#reader.spanAt(offset);
    const last = this.#reader.spanAt(offset + length - 1);
    const parts: Uint8Array[] = [];
    for (let id = first; id <= last; id++) {
      const data = this.fetcher.peek(id);
      if (data === undefined) return false;
      parts.push(data);
    }
    let filled = 0;
    for (let id = first; id <= last; id++) {
      const span = this.#reader.spans[id];
      const data = parts[id - first];
      if (span === undefined || data === undefined) return false;
      const from = Math.max(offset, span.outStart) - span.outStart;
      const to = Math.min(offset + length, span.outEnd) - span.outStart;
      into.set(data.subarray(from, to), filled);
      filled += to - from;
    }
    this.#lastDemand = Date.now();
    this.#track(offset, length);
    return true;
  }

  /** Forward-moving reads (one file read on, or the next files of a tar-order walk) read ahead. */
  #track(offset: number, length: number): void {
    for (const e of this.#recentEnds) {
      if (offset >= e && offset - e <= SEQUENTIAL_GAP) {
        this.#maybePrefetch(offset + length);
        break;
      }
    }
    this.#recentEnds.delete(offset);
    this.#recentEnds.add(offset + length);
    if (this.#recentEnds.size > 64) this.#recentEnds.delete(this.#recentEnds.values().next().value as number);
  }

  #maybePrefetch(end: number): void {
    const spans = this.#reader.spans;
    const last = this.#reader.spanAt(Math.max(0, end - 1));
    const s = spans[last];
    if (s === undefined || s.outEnd - end > this.#window) return;
    let batch: number[] = [];
    const flush = (): void => {
      if (batch.length === 0) return;
      const ids = batch;
      batch = [];
      for (const id of ids) if (!this.#kind.has(id)) this.#kind.set(id, 'prefetch');
      this.fetcher.prefetch(ids).then(() => {
        for (const id of ids) {
          if (this.fetcher.peek(id) !== undefined) this.#have.add(id);
          if (this.#kind.get(id) === 'prefetch') this.#kind.delete(id);
        }
      }, () => undefined);
    };
    for (let next = last + 1; next <= last + PREFETCH_SPANS && next < spans.length; next++) {
      if (this.#have.has(next) || this.#kind.has(next) || this.fetcher.has(next)) {
        flush();
        continue;
      }
      batch.push(next);
      if (batch.length >= PREFETCH_BATCH) flush();
    }
    flush();
  }

  async #backgroundTick(): Promise<void> {
    if (this.#closed || this.#bgBusy || this.#demandInFlight > 0 || Date.now() - this.#lastDemand < this.#quiet) return;
    this.#bgBusy = true;
    try {
      const n = this.#reader.spans.length;
      while (this.#bgCursor < n && (this.#have.has(this.#bgCursor) || (await this.#onDisk(this.#bgCursor)))) {
        this.#have.add(this.#bgCursor);
        this.#bgCursor++;
      }
      if (this.#bgCursor >= n) {
        this.#metrics.emit({ type: 'background-done', layerDigest: this.layerDigest });
        this.#stopBackground();
        return;
      }
      await this.#span(this.#bgCursor, 'background').catch(() => undefined); // a failure is retried next tick
    } finally {
      this.#bgBusy = false;
    }
  }

  async #onDisk(id: number): Promise<boolean> {
    if (this.#dir === undefined) return false;
    return access(join(this.#dir, `${this.#prefix}-${id}`)).then(() => true, () => false);
  }

  #stopBackground(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.#closed = true;
    this.#stopBackground();
  }
}
