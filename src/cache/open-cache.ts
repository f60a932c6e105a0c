/**
 * Assembles the cache from typed config (STYLE.md §9–§10): memory over disk, plus Redis when a URL is
 * given, for both blobs and metadata, and a FleetFlight sharing the same Redis connection. The
 * composition root parses `--cache-dir`, `--redis` etc. and passes the values here; nothing is read from
 * the environment. Redis being down at startup is not an error: the stores start degraded and pick Redis
 * up when it answers.
 */
import { join } from 'node:path';
import { DiskMetaStore } from './disk-meta-store.js';
import { DiskBlobStore } from './disk-store.js';
import { FleetFlight, type FleetFlightOptions } from './fleet-flight.js';
import { MemoryBlobStore, MemoryMetaStore } from './memory-store.js';
import { RedisConnection, type RedisConnectionOptions } from './redis-connection.js';
import { RedisBlobStore, RedisMetaStore, type RedisBlobStoreOptions } from './redis-store.js';
import { TieredBlobStore, TieredMetaStore } from './tiered-store.js';
import type { BlobStore, MetaStore } from './types.js';

export interface CacheConfig {
  /** Root of the disk tier (blobs under `<dir>/blobs`, records under `<dir>/meta`). */
  dir: string;
  /** In-process tier bound (default 256 MiB). */
  memoryBytes?: number;
  /** Disk tier bound (default 10 GiB). */
  diskBytes?: number;
  /** fsync disk writes (default true). */
  fsync?: boolean;
  /** `--redis` URL; absent: no shared tier, single flight within the process only. */
  redisUrl?: string;
  redis?: RedisConnectionOptions & RedisBlobStoreOptions;
  flight?: FleetFlightOptions;
  /** How long to wait for Redis at startup before continuing degraded (default 2000 ms). */
  redisStartupWaitMs?: number;
}

export interface Cache {
  blobs: BlobStore;
  meta: MetaStore;
  /** The disk tier itself, for streaming large blobs in and out (`createWriter`, `locate`). */
  disk: DiskBlobStore;
  flight: FleetFlight;
  redis: RedisConnection | undefined;
  close(): Promise<void>;
}

export async function openCache(cfg: CacheConfig): Promise<Cache> {
  const disk = await DiskBlobStore.open({ root: join(cfg.dir), maxBytes: cfg.diskBytes, fsync: cfg.fsync });
  const diskMeta = await DiskMetaStore.open({ root: join(cfg.dir), fsync: cfg.fsync });
  const memory = new MemoryBlobStore({ maxBytes: cfg.memoryBytes });
  const memoryMeta = new MemoryMetaStore();
  let redis: RedisConnection | undefined;
  const blobTiers: BlobStore[] = [memory, disk];
  const names = ['memory', 'disk'];
  const metaTiers: MetaStore[] = [memoryMeta, diskMeta];
  if (cfg.redisUrl) {
    redis = RedisConnection.fromUrl(cfg.redisUrl, cfg.redis ?? {});
    await redis.waitReady(cfg.redisStartupWaitMs ?? 2000);
    blobTiers.push(new RedisBlobStore(redis, cfg.redis ?? {}));
    names.push('redis');
    metaTiers.push(new RedisMetaStore(redis));
  }
  return {
    blobs: new TieredBlobStore(blobTiers, names),
    meta: new TieredMetaStore(metaTiers),
    disk,
    flight: new FleetFlight(redis, cfg.flight ?? {}),
    redis,
    close: async () => {
      await redis?.close();
    },
  };
}
