/**
 * The functions behind `soci-proxy cache stats` and `soci-proxy cache gc` (the CLI wires flags and
 * output; nothing here prints). `cacheStats` returns the store's counters and sizes plus a one-line-per-
 * tier text rendering; `cacheGc` evicts least-recently-used entries down to `maxBytes` in every tier that
 * supports it (disk and memory; Redis relies on TTL and maxmemory).
 */
import type { BlobStore, CacheStats, GcResult } from './types.js';

export interface CacheStatsReport {
  stats: CacheStats;
  /** Human-readable lines, one per tier. */
  lines: string[];
}

function fmtBytes(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function line(s: CacheStats): string {
  return (
    `${s.tier}: entries=${s.entries ?? '-'} bytes=${fmtBytes(s.bytes)} max=${fmtBytes(s.maxBytes)} ` +
    `hits=${s.hits} misses=${s.misses} puts=${s.puts} evictions=${s.evictions} corrupt=${s.corrupt} unavailable=${s.unavailable}`
  );
}

export async function cacheStats(store: BlobStore): Promise<CacheStatsReport> {
  const stats = await store.stats();
  const lines = stats.tiers ? stats.tiers.map(line) : [line(stats)];
  return { stats, lines };
}

/** Evicts down to `maxBytes` (or the store's own bound). A store without `gc` removes nothing. */
export async function cacheGc(store: BlobStore, maxBytes?: number): Promise<GcResult> {
  if (maxBytes !== undefined && (!Number.isSafeInteger(maxBytes) || maxBytes < 0)) throw new RangeError(`invalid maxBytes ${maxBytes}`);
  if (!store.gc) return { removed: 0, freedBytes: 0, remainingBytes: (await store.stats()).bytes ?? 0 };
  return store.gc(maxBytes);
}
