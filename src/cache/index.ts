/**
 * Public surface of src/cache: the BlobStore / MetaStore contract, the memory, disk and Redis tiers, the
 * tiered wrapper, in-process and fleet-wide single flight, metadata keys, events and the CLI helpers.
 * `./testing/*` and `./contract.ts` are for tests only and are not exported here.
 */
export type { BlobStore, MetaStore, CacheStats, GcResult } from './types.js';
export { CACHE_CHANNEL, onCacheEvent, type CacheEvent, type CacheOp } from './events.js';
export { MemoryBlobStore, MemoryMetaStore, type MemoryBlobStoreOptions, type MemoryMetaStoreOptions } from './memory-store.js';
export { DiskBlobStore, type DiskBlobStoreOptions } from './disk-store.js';
export { DiskBlobWriter, type BlobFileWriter } from './disk-blob-writer.js';
export { DiskMetaStore, type DiskMetaStoreOptions } from './disk-meta-store.js';
export { RedisConnection, createRedisClient, type RedisClient, type RedisConnectionOptions } from './redis-connection.js';
export { RedisBlobStore, RedisMetaStore, type RedisBlobStoreOptions } from './redis-store.js';
export { TieredBlobStore, TieredMetaStore } from './tiered-store.js';
export { SingleFlight } from './single-flight.js';
export { FleetFlight, type FleetFlightOptions, type FlightTask } from './fleet-flight.js';
export {
  sociResultKey,
  ztocKey,
  encodeRecord,
  decodeRecord,
  type IndexOptionsKey,
  type SociResultRecord,
  type ZtocRecord,
} from './keys.js';
export { cacheStats, cacheGc, type CacheStatsReport } from './admin.js';
export { openCache, type Cache, type CacheConfig } from './open-cache.js';
