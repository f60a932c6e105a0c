/**
 * Tiers by wrapping (STYLE.md §4; distribution's proxyBlobStore): `new TieredBlobStore([memory, disk,
 * redis])`, upper (fastest, most local) tier first. `get` reads through: it asks each tier in turn and,
 * on a hit in tier i, fills tiers 0..i-1 before returning. `put` verifies once, then commits bottom-up
 * (shared tier first, local last), so when the local tier shows an artifact the fleet can see it too. A
 * tier that throws (other than DIGEST_INVALID) is skipped with an 'error' event: the cache is an
 * optimization and never fails a request while one tier still works. TieredMetaStore does the same for
 * metadata records; fills of upper tiers use `fillTtlMs` (records are digest-keyed and immutable, so the
 * default is no expiry).
 */
import type { Digest } from '../oci/digest.js';
import { errorCode } from '../oci/errors.js';
import { publish } from './events.js';
import type { BlobStore, CacheStats, GcResult, MetaStore } from './types.js';
import { assertContent, assertDigest, newCounters } from './verify.js';

async function guarded<T>(tier: string, op: string, fn: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (errorCode(err) === 'DIGEST_INVALID') throw err;
    publish({ op: 'error', tier, detail: op, error: err });
    return fallback;
  }
}

export class TieredBlobStore implements BlobStore {
  readonly #tiers: BlobStore[];
  readonly #names: string[];

  constructor(tiers: BlobStore[], names?: string[]) {
    if (tiers.length === 0) throw new Error('TieredBlobStore needs at least one tier');
    this.#tiers = tiers;
    this.#names = names ?? tiers.map((_, i) => `tier${i}`);
  }

  async get(digest: Digest): Promise<Uint8Array | undefined> {
    assertDigest(digest);
    for (let i = 0; i < this.#tiers.length; i++) {
      const bytes = await guarded(this.#names[i]!, 'get', () => this.#tiers[i]!.get(digest), undefined);
      if (bytes === undefined) continue;
      for (let j = i - 1; j >= 0; j--) await guarded(this.#names[j]!, 'fill', () => this.#tiers[j]!.put(digest, bytes), undefined);
      return bytes;
    }
    return undefined;
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    assertContent(digest, bytes);
    let failed = 0;
    let lastErr: unknown;
    for (let i = this.#tiers.length - 1; i >= 0; i--) {
      try {
        await this.#tiers[i]!.put(digest, bytes);
      } catch (err) {
        if (errorCode(err) === 'DIGEST_INVALID') throw err;
        failed++;
        lastErr = err;
        publish({ op: 'error', tier: this.#names[i]!, detail: 'put', error: err });
      }
    }
    if (failed === this.#tiers.length) throw lastErr;
  }

  async has(digest: Digest): Promise<boolean> {
    for (let i = 0; i < this.#tiers.length; i++) {
      if (await guarded(this.#names[i]!, 'has', () => this.#tiers[i]!.has(digest), false)) return true;
    }
    return false;
  }

  async delete(digest: Digest): Promise<void> {
    for (let i = 0; i < this.#tiers.length; i++) await guarded(this.#names[i]!, 'delete', () => this.#tiers[i]!.delete(digest), undefined);
  }

  /** Runs `gc` on every tier that has one (`maxBytes` applies to each such tier). */
  async gc(maxBytes?: number): Promise<GcResult> {
    const total: GcResult = { removed: 0, freedBytes: 0, remainingBytes: 0 };
    for (const t of this.#tiers) {
      if (!t.gc) continue;
      const r = await t.gc(maxBytes);
      total.removed += r.removed;
      total.freedBytes += r.freedBytes;
      total.remainingBytes += r.remainingBytes;
    }
    return total;
  }

  async stats(): Promise<CacheStats> {
    const tiers = await Promise.all(this.#tiers.map((t) => t.stats()));
    const sum = newCounters();
    for (const s of tiers) for (const k of Object.keys(sum) as Array<keyof typeof sum>) sum[k] += s[k];
    return { tier: 'tiered', ...sum, tiers };
  }

  async close(): Promise<void> {
    for (const t of this.#tiers) await t.close?.();
  }
}

export class TieredMetaStore implements MetaStore {
  readonly #tiers: MetaStore[];
  readonly #fillTtlMs: number | undefined;

  constructor(tiers: MetaStore[], opts: { fillTtlMs?: number } = {}) {
    if (tiers.length === 0) throw new Error('TieredMetaStore needs at least one tier');
    this.#tiers = tiers;
    this.#fillTtlMs = opts.fillTtlMs;
  }

  async get(key: string): Promise<string | undefined> {
    for (let i = 0; i < this.#tiers.length; i++) {
      const v = await guarded(`meta${i}`, 'get', () => this.#tiers[i]!.get(key), undefined);
      if (v === undefined) continue;
      for (let j = i - 1; j >= 0; j--) await guarded(`meta${j}`, 'fill', () => this.#tiers[j]!.set(key, v, this.#fillTtlMs), undefined);
      return v;
    }
    return undefined;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    let failed = 0;
    let lastErr: unknown;
    for (let i = this.#tiers.length - 1; i >= 0; i--) {
      try {
        await this.#tiers[i]!.set(key, value, ttlMs);
      } catch (err) {
        failed++;
        lastErr = err;
        publish({ op: 'error', tier: `meta${i}`, detail: 'set', error: err });
      }
    }
    if (failed === this.#tiers.length) throw lastErr;
  }

  async delete(key: string): Promise<void> {
    for (let i = 0; i < this.#tiers.length; i++) await guarded(`meta${i}`, 'delete', () => this.#tiers[i]!.delete(key), undefined);
  }
}
