/**
 * The Redis tier shared by all replicas. Layout, chosen so large artifacts neither blow Redis memory nor
 * become visible half-written: a blob is split into chunks of `chunkBytes` (default 512 KiB) under
 * `soci:blob:{<digest>}:<n>`, plus a small manifest `soci:blob:{<digest>}` = `{"size","chunk","n"}`. All
 * keys of one blob share the hash tag `{<digest>}`, so they live in one Cluster slot and the whole write
 * is one MULTI/EXEC with the manifest set last: a reader never sees a manifest without its chunks. Reads
 * fetch the manifest, then all chunks in one MGET, and re-hash the concatenation; a missing chunk
 * (evicted by `maxmemory-policy allkeys-lru`, or expired) or a digest mismatch (planted or damaged value)
 * deletes the keys and reads as a miss. Why chunks rather than one value: a multi-MB value blocks the
 * single-threaded server while it is copied and is the unit Redis evicts and migrates; 512 KiB chunks keep
 * each command short. Memory is bounded by `maxBlobBytes` (default 32 MiB: a zTOC is ~32.8 KB per 4 MiB
 * span, so this covers ~4 GB layers; larger artifacts stay in each replica's disk tier) and by a TTL
 * (default 7 days) refreshed on every hit, so cold artifacts leave Redis while the disk tiers keep them.
 * Metadata records (RedisMetaStore) are `soci:meta:<key>` = `<sum> <value>` (verify.ts `sealRecord`).
 * When Redis is unreachable every operation is a miss or a dropped write (RedisConnection.run).
 */
import type { Digest } from '../oci/digest.js';
import { verifyDigest } from '../oci/digest.js';
import { publish } from './events.js';
import type { RedisConnection } from './redis-connection.js';
import type { BlobStore, CacheStats, MetaStore } from './types.js';
import { assertContent, assertDigest, newCounters, openRecord, sealRecord } from './verify.js';

export interface RedisBlobStoreOptions {
  chunkBytes?: number;
  maxBlobBytes?: number;
  /** Expiry of every key, refreshed on hit; null: none (default 7 days). */
  ttlMs?: number | null;
}

interface BlobManifest {
  size: number;
  chunk: number;
  n: number;
}

export class RedisBlobStore implements BlobStore {
  readonly #conn: RedisConnection;
  readonly #chunk: number;
  readonly #max: number;
  readonly #ttl: number | null;
  readonly #counters = newCounters();

  constructor(conn: RedisConnection, opts: RedisBlobStoreOptions = {}) {
    this.#conn = conn;
    this.#chunk = opts.chunkBytes ?? 512 * 1024;
    this.#max = opts.maxBlobBytes ?? 32 * 1024 * 1024;
    this.#ttl = opts.ttlMs === undefined ? 7 * 24 * 3_600_000 : opts.ttlMs;
  }

  /** The manifest key of `digest` (exported for tests that plant damage). */
  manifestKey(digest: Digest): string {
    return `${this.#conn.keyPrefix}blob:{${digest}}`;
  }

  chunkKey(digest: Digest, n: number): string {
    return `${this.manifestKey(digest)}:${n}`;
  }

  #keys(digest: Digest, n: number): string[] {
    return [this.manifestKey(digest), ...Array.from({ length: n }, (_, i) => this.chunkKey(digest, i))];
  }

  #unavailable(): undefined {
    this.#counters.unavailable++;
    return undefined;
  }

  async get(digest: Digest): Promise<Uint8Array | undefined> {
    assertDigest(digest);
    const mkey = this.manifestKey(digest);
    const raw = await this.#conn.run((c) => c.get(mkey));
    if (raw === undefined) return this.#unavailable();
    if (raw === null) return this.#miss(digest);
    let m: BlobManifest | undefined;
    try {
      m = JSON.parse(raw) as BlobManifest;
    } catch {
      m = undefined;
    }
    if (!m || !Number.isSafeInteger(m.n) || m.n < 0 || m.n > 1 + this.#max / 1024) return this.#corrupt(digest, 1, 0);
    const keys = this.#keys(digest, m.n).slice(1);
    const parts = m.n === 0 ? [] : await this.#conn.run((c) => c.mgetBuffer(...keys));
    if (parts === undefined) return this.#unavailable();
    if (parts.some((p) => p === null)) {
      // Evicted or expired piecemeal: not damage, but the remains are useless.
      await this.#conn.run((c) => c.del(...this.#keys(digest, m.n)));
      return this.#miss(digest);
    }
    const bytes = Buffer.concat(parts as Buffer[]);
    if (bytes.byteLength !== m.size || !verifyDigest(bytes, digest)) return this.#corrupt(digest, m.n, bytes.byteLength);
    if (this.#ttl !== null) {
      const ttl = this.#ttl;
      void this.#conn.run((c) => {
        const tx = c.multi();
        for (const k of this.#keys(digest, m.n)) tx.pexpire(k, ttl);
        return tx.exec();
      });
    }
    this.#counters.hits++;
    publish({ op: 'get', tier: 'redis', key: digest, hit: true, bytes: bytes.byteLength });
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #miss(digest: Digest): undefined {
    this.#counters.misses++;
    publish({ op: 'get', tier: 'redis', key: digest, hit: false });
    return undefined;
  }

  async #corrupt(digest: Digest, n: number, bytes: number): Promise<undefined> {
    this.#counters.corrupt++;
    publish({ op: 'corrupt', tier: 'redis', key: digest, bytes });
    await this.#conn.run((c) => c.del(...this.#keys(digest, n)));
    return this.#miss(digest);
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    assertContent(digest, bytes);
    if (bytes.byteLength > this.#max) return;
    const n = Math.ceil(bytes.byteLength / this.#chunk);
    const manifest: BlobManifest = { size: bytes.byteLength, chunk: this.#chunk, n };
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const ok = await this.#conn.run((c) => {
      const tx = c.multi();
      for (let i = 0; i < n; i++) {
        const part = buf.subarray(i * this.#chunk, (i + 1) * this.#chunk);
        if (this.#ttl !== null) tx.set(this.chunkKey(digest, i), part, 'PX', this.#ttl);
        else tx.set(this.chunkKey(digest, i), part);
      }
      // Manifest last: it is what makes the blob visible.
      if (this.#ttl !== null) tx.set(this.manifestKey(digest), JSON.stringify(manifest), 'PX', this.#ttl);
      else tx.set(this.manifestKey(digest), JSON.stringify(manifest));
      return tx.exec();
    });
    if (ok === undefined || ok === null) return void this.#unavailable();
    this.#counters.puts++;
    publish({ op: 'put', tier: 'redis', key: digest, bytes: bytes.byteLength });
  }

  async has(digest: Digest): Promise<boolean> {
    assertDigest(digest);
    const n = await this.#conn.run((c) => c.exists(this.manifestKey(digest)));
    return n === 1;
  }

  async delete(digest: Digest): Promise<void> {
    assertDigest(digest);
    const mkey = this.manifestKey(digest);
    const raw = await this.#conn.run((c) => c.get(mkey));
    let n = 0;
    try {
      n = raw ? (JSON.parse(raw) as BlobManifest).n : 0;
    } catch {
      n = 0;
    }
    // Manifest first (readers stop seeing the blob), then the chunks.
    await this.#conn.run((c) => c.del(mkey));
    if (Number.isSafeInteger(n) && n > 0) await this.#conn.run((c) => c.del(...this.#keys(digest, n).slice(1)));
  }

  async stats(): Promise<CacheStats> {
    return { tier: 'redis', maxBytes: this.#max, ...this.#counters, unavailable: this.#counters.unavailable };
  }
}

export class RedisMetaStore implements MetaStore {
  readonly #conn: RedisConnection;

  constructor(conn: RedisConnection) {
    this.#conn = conn;
  }

  key(key: string): string {
    return `${this.#conn.keyPrefix}meta:${key}`;
  }

  async get(key: string): Promise<string | undefined> {
    const raw = await this.#conn.run((c) => c.get(this.key(key)));
    if (raw === undefined || raw === null) return undefined;
    const value = openRecord(key, raw);
    if (value === undefined) {
      publish({ op: 'corrupt', tier: 'meta-redis', key });
      await this.#conn.run((c) => c.del(this.key(key)));
    }
    return value;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    const sealed = sealRecord(key, value);
    await this.#conn.run((c) => (ttlMs !== undefined ? c.set(this.key(key), sealed, 'PX', Math.max(1, Math.round(ttlMs))) : c.set(this.key(key), sealed)));
  }

  async delete(key: string): Promise<void> {
    await this.#conn.run((c) => c.del(this.key(key)));
  }
}
