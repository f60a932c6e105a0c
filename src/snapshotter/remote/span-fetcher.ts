/**
 * The span cache of one layer (soci-format.md §6, §7.1): `getSpan(id)` fetches a span's compressed range
 * `[start, end)` from the blob once, checks it against `span_digests[id]` (a mismatch is refetched once,
 * then it is a `CorruptLayer`), inflates it and keeps the inflated bytes in a small in-memory LRU and a
 * bounded on-disk cache dir. Concurrent requests for one span share one fetch. Disk files are named
 * `<layer digest hex>-<span id>` and written as temp + rename, so a crash never leaves a partial span;
 * a disk file of the wrong length is ignored and refetched. `read(offset, length)` serves any
 * uncompressed range of the tar stream through the cache. `prefetch(ids)` fetches a run of adjacent spans
 * in one range request (each still checked against its own digest), for read-ahead of sequential walks;
 * `peek(id)` is the memory cache alone, for answering reads without a promise. With a `SpanInflater`,
 * the spans of read-ahead batches are checked and inflated on its worker thread instead of this one (a
 * span a reader waits on is still done here: no thread hop on that path).
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { CorruptLayer } from '../../oci/errors.js';
import type { RangeSource, ZtocReader } from '../../indexer/reader.js';
import type { InflateOutcome, SpanInflater } from './span-inflater.js';

export interface SpanFetcherOptions {
  reader: ZtocReader;
  source: RangeSource;
  /** `sha256:<hex>` of the layer blob: names the disk files. */
  layerDigest: string;
  /** Directory for inflated spans; none means memory only. Created if missing. */
  cacheDir?: string;
  /** Bound of this layer's disk files in bytes (default 512 MiB); oldest-used files go first. */
  maxDiskBytes?: number;
  /** Spans kept in memory (default 16). */
  memorySpans?: number;
  /** Bound of the inflated bytes kept in memory (default 128 MiB). */
  memoryBytes?: number;
  /** Checks and inflates prefetched gzip spans off this thread; without one (or when it fails) this thread does. */
  inflater?: SpanInflater | undefined;
}

export interface SpanFetcherStats {
  fetches: number;
  compressedBytes: number;
  digestMismatches: number;
  memoryHits: number;
  diskHits: number;
}

export class SpanFetcher {
  readonly reader: ZtocReader;
  readonly stats: SpanFetcherStats = { fetches: 0, compressedBytes: 0, digestMismatches: 0, memoryHits: 0, diskHits: 0 };
  readonly #source: RangeSource;
  readonly #inflater: SpanInflater | undefined;
  readonly #prefix: string;
  readonly #dir: string | undefined;
  readonly #maxDisk: number;
  readonly #memory: LRUCache<number, Uint8Array>;
  readonly #inflight = new Map<number, Promise<Uint8Array>>();
  /** Disk files of this layer by span id, in least-recently-used-first order (Map insertion order). */
  readonly #disk = new Map<number, number>();
  #diskBytes = 0;

  constructor(opts: SpanFetcherOptions) {
    this.reader = opts.reader;
    this.#source = opts.source;
    this.#inflater = opts.reader.ztoc.compressionAlgorithm === 'gzip' ? opts.inflater : undefined;
    this.#prefix = opts.layerDigest.replace(/^sha256:/, '').replace(/[^0-9a-zA-Z]/g, '_');
    this.#dir = opts.cacheDir;
    this.#maxDisk = opts.maxDiskBytes ?? 512 * 1024 * 1024;
    this.#memory = new LRUCache({
      max: Math.max(1, opts.memorySpans ?? 16),
      maxSize: Math.max(1, opts.memoryBytes ?? 128 * 1024 * 1024),
      sizeCalculation: (v) => Math.max(1, v.length),
    });
    if (this.#dir !== undefined) {
      mkdirSync(this.#dir, { recursive: true });
      for (const name of readdirSync(this.#dir)) {
        const m = new RegExp(`^${this.#prefix}-(\\d+)$`).exec(name);
        if (m) {
          const size = statSync(join(this.#dir, name)).size;
          this.#disk.set(Number(m[1]), size);
          this.#diskBytes += size;
        }
      }
    }
  }

  /** The inflated bytes of span `id`. */
  getSpan(id: number): Promise<Uint8Array> {
    const hot = this.#memory.get(id);
    if (hot !== undefined) {
      this.stats.memoryHits++;
      return Promise.resolve(hot);
    }
    let p = this.#inflight.get(id);
    if (p === undefined) {
      p = this.#load(id).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, p);
    }
    return p;
  }

  /** Span `id` if it is in memory (no disk, no fetch). */
  peek(id: number): Uint8Array | undefined {
    return this.#memory.get(id);
  }

  /** Whether span `id` is in memory, on disk or being fetched. */
  has(id: number): boolean {
    return this.#memory.has(id) || this.#inflight.has(id) || this.#disk.has(id);
  }

  /**
   * Fetches the spans of `ids` (ascending, adjacent) that are in no cache and not in flight, as one range
   * request per adjacent run; resolves when they are stored. Errors are left to a later `getSpan`.
   */
  async prefetch(ids: readonly number[]): Promise<void> {
    const want = ids.filter((id) => id >= 0 && id < this.reader.spans.length && !this.has(id));
    if (want.length === 0) return;
    const run = want.filter((id, i) => i === 0 || id === (want[i - 1] as number) + 1);
    const settle = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void }>();
    for (const id of run) {
      const p = new Promise<Uint8Array>((resolve, reject) => settle.set(id, { resolve, reject }));
      const tracked: Promise<Uint8Array> = p.finally(() => {
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
    if (all !== undefined && first !== undefined && last !== undefined && all.length !== last.end - first.start) all = undefined;
    const inflated = all !== undefined && first !== undefined ? await this.#inflateBatch(all, first.start, run) : undefined;
    const toDisk: Array<[number, Uint8Array]> = [];
    for (const [i, id] of run.entries()) {
      const span = this.reader.spans[id];
      const s = settle.get(id) as { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void };
      const data = inflated?.[i];
      if (data !== undefined && span !== undefined && data.length === span.outEnd - span.outStart) {
        this.#memory.set(id, data);
        s.resolve(data);
        toDisk.push([id, data]);
        continue;
      }
      // A failed or mismatched batch falls back to the checked single-span path for this span.
      this.#inflight.delete(id);
      this.getSpan(id).then(s.resolve, s.reject);
    }
    for (const [id, data] of toDisk) await this.#writeDisk(id, data).catch(() => undefined);
  }

  /**
   * Each span of `ids` (adjacent, `buf` holding their compressed bytes from blob offset `base`) checked and
   * inflated, or undefined where it did not match its digest or failed to inflate. `buf` is consumed.
   */
  async #inflateBatch(buf: Uint8Array, base: number, ids: readonly number[]): Promise<Array<Uint8Array | undefined>> {
    const spans = ids.map((id) => this.reader.spans[id]);
    if (this.#inflater !== undefined && spans.every((s) => s !== undefined)) {
      const parts = ids.map((id, i) => {
        const s = spans[i] as (typeof spans)[number] & object;
        return { id, from: s.start - base, to: s.end - base, digest: s.digest, length: s.outEnd - s.outStart };
      });
      const out = await this.#inflater.inflate(this.reader, () => this.reader.ztoc.checkpoints, buf, parts).catch(() => undefined);
      if (out !== undefined) return out.map((o: InflateOutcome) => (o.ok ? o.data : undefined));
      if (buf.buffer.byteLength === 0) return ids.map(() => undefined); // transferred, then the worker died
    }
    return ids.map((id, i) => {
      const s = spans[i];
      if (s === undefined) return undefined;
      const part = buf.subarray(s.start - base, s.end - base);
      if (!this.reader.verifySpan(id, part)) return undefined;
      try {
        return this.reader.decompressSpan(id, part);
      } catch {
        return undefined;
      }
    });
  }

  /** The uncompressed bytes [offset, offset + length) of the layer's tar stream. */
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.reader.readRange(this.#source, offset, length, (id) => this.getSpan(id));
  }

  async #load(id: number): Promise<Uint8Array> {
    const span = this.reader.spans[id];
    if (span === undefined) throw new RangeError(`span ${id} outside 0..${this.reader.spans.length - 1}`);
    const want = span.outEnd - span.outStart;
    const cached = await this.#readDisk(id, want);
    if (cached !== undefined) {
      this.stats.diskHits++;
      this.#memory.set(id, cached);
      return cached;
    }
    // A reader waits on this span: it is checked and inflated here, with no hop to the inflater's thread.
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
    this.#memory.set(id, data);
    await this.#writeDisk(id, data).catch(() => undefined); // a full or broken disk only costs a refetch
    return data;
  }

  async #readDisk(id: number, want: number): Promise<Uint8Array | undefined> {
    if (this.#dir === undefined || !this.#disk.has(id)) return undefined;
    const size = this.#disk.get(id) as number;
    this.#disk.delete(id);
    this.#disk.set(id, size); // most recently used
    try {
      const buf = await readFile(join(this.#dir, `${this.#prefix}-${id}`));
      if (buf.length === want) return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
    } catch {
      // gone or unreadable: refetch
    }
    this.#disk.delete(id);
    this.#diskBytes -= size;
    return undefined;
  }

  async #writeDisk(id: number, data: Uint8Array): Promise<void> {
    if (this.#dir === undefined || data.length > this.#maxDisk) return;
    while (this.#diskBytes + data.length > this.#maxDisk && this.#disk.size > 0) {
      const [oldest, size] = this.#disk.entries().next().value as [number, number];
      this.#disk.delete(oldest);
      this.#diskBytes -= size;
      await unlink(join(this.#dir, `${this.#prefix}-${oldest}`)).catch(() => undefined);
    }
    const final = join(this.#dir, `${this.#prefix}-${id}`);
    const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await writeFile(tmp, data);
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    this.#disk.set(id, data.length);
    this.#diskBytes += data.length;
  }
}
