/**
 * The in-process tier: an lru-cache bounded by bytes (blobs) or by entry count (metadata). It cannot be
 * corrupted behind our back, so it verifies only on `put`. It is the top tier of every TieredBlobStore and
 * the whole cache in tests; entries larger than the bound are not kept (lru-cache refuses them).
 */
import { LRUCache } from 'lru-cache';
import type { Digest } from '../oci/digest.js';
import { publish } from './events.js';
import type { BlobStore, CacheStats, GcResult, MetaStore } from './types.js';
import { assertContent, assertDigest, newCounters } from './verify.js';

export interface MemoryBlobStoreOptions {
  /** Byte bound of the cache (default 256 MiB). */
  maxBytes?: number;
  /** Name used in events and stats (default 'memory'). */
  tier?: string;
}

export class MemoryBlobStore implements BlobStore {
  readonly #lru: LRUCache<string, Uint8Array>;
  readonly #tier: string;
  readonly #maxBytes: number;
  readonly #counters = newCounters();

  constructor(opts: MemoryBlobStoreOptions = {}) {
    this.#maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.#tier = opts.tier ?? 'memory';
    this.#lru = new LRUCache<string, Uint8Array>({
      maxSize: this.#maxBytes,
      sizeCalculation: (v) => Math.max(1, v.byteLength),
      dispose: (v, k, reason) => {
        if (reason === 'evict') {
          this.#counters.evictions++;
          publish({ op: 'evict', tier: this.#tier, key: k, bytes: v.byteLength });
        }
      },
    });
  }

  async get(digest: Digest): Promise<Uint8Array | undefined> {
    assertDigest(digest);
    const v = this.#lru.get(digest);
    if (v) this.#counters.hits++;
    else this.#counters.misses++;
    publish({ op: 'get', tier: this.#tier, key: digest, hit: v !== undefined, bytes: v?.byteLength });
    return v;
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    assertContent(digest, bytes);
    this.#counters.puts++;
    this.#lru.set(digest, bytes);
    publish({ op: 'put', tier: this.#tier, key: digest, bytes: bytes.byteLength });
  }

  async has(digest: Digest): Promise<boolean> {
    assertDigest(digest);
    return this.#lru.has(digest);
  }

  async delete(digest: Digest): Promise<void> {
    assertDigest(digest);
    this.#lru.delete(digest);
  }

  async gc(maxBytes = this.#maxBytes): Promise<GcResult> {
    let removed = 0;
    let freedBytes = 0;
    // rkeys(): least recently used first.
    for (const k of [...this.#lru.rkeys()]) {
      if (this.#lru.calculatedSize <= maxBytes) break;
      const v = this.#lru.peek(k);
      this.#lru.delete(k);
      removed++;
      freedBytes += v?.byteLength ?? 0;
    }
    return { removed, freedBytes, remainingBytes: this.#lru.calculatedSize };
  }

  async stats(): Promise<CacheStats> {
    return { tier: this.#tier, entries: this.#lru.size, bytes: this.#lru.calculatedSize, maxBytes: this.#maxBytes, ...this.#counters };
  }
}

export interface MemoryMetaStoreOptions {
  /** Entry bound (default 100 000). */
  maxEntries?: number;
}

export class MemoryMetaStore implements MetaStore {
  readonly #lru: LRUCache<string, string>;

  constructor(opts: MemoryMetaStoreOptions = {}) {
    this.#lru = new LRUCache<string, string>({ max: opts.maxEntries ?? 100_000, ttlAutopurge: false });
  }

  async get(key: string): Promise<string | undefined> {
    return this.#lru.get(key);
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.#lru.set(key, value, ttlMs !== undefined ? { ttl: ttlMs } : {});
  }

  async delete(key: string): Promise<void> {
    this.#lru.delete(key);
  }
}
