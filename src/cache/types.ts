/**
 * The cache contract of soci-proxy (issue "Shared cache"; STYLE.md §2–§6). Indexing a layer streams and
 * inflates all of it, so every derived artifact — zTOCs, SOCI indexes, rewritten manifests, SOCI-enabled
 * image indexes — is stored once, addressed by its own digest, and shared by every request, image,
 * repository and replica. Two narrow interfaces cover it: `BlobStore` for digest-addressed bytes and
 * `MetaStore` for small string records ("manifest digest + options → SOCI-enabled index digest", "layer
 * digest + span size + builder → zTOC digest or skip reason"; see keys.ts). Rules every implementation
 * keeps, checked by contract.ts: (1) keys are digests (or keys built from digests), never tags;
 * (2) `put` verifies the bytes against the digest and throws `OciError('DIGEST_INVALID')` on mismatch —
 * the only error a healthy cache raises to its caller; (3) a `put` commits atomically: a reader sees the
 * whole artifact or nothing, never a prefix (../shared/spec/soci-format.md: artifacts must be byte-exact);
 * (4) a tier that can be corrupted behind our back (disk, Redis) re-verifies on read, deletes what does not
 * match and reports a miss plus a 'corrupt' event, never serving the damaged bytes; (5) a tier that cannot
 * be reached (Redis down) degrades to misses and dropped writes with an 'unavailable' event, never to a
 * rejected promise. Returned `Uint8Array`s may be shared with the cache: callers must not mutate them.
 */
import type { Digest } from '../oci/digest.js';

/** Counters and sizes of one store (or of each tier of a tiered store), for `soci-proxy cache stats`. */
export interface CacheStats {
  tier: string;
  /** Entries currently held, when the tier can count them cheaply (Redis cannot: undefined). */
  entries?: number;
  /** Bytes currently held, when known. */
  bytes?: number;
  /** Configured byte bound, when the tier has one. */
  maxBytes?: number;
  hits: number;
  misses: number;
  puts: number;
  evictions: number;
  corrupt: number;
  /** Operations dropped because the tier was unreachable. */
  unavailable: number;
  /** Per-tier stats of a tiered store, upper tier first. */
  tiers?: CacheStats[];
}

/** Digest-addressed, immutable bytes. */
export interface BlobStore {
  /** The verified bytes, or undefined on a miss (absent, evicted, corrupt, or tier unreachable). */
  get(digest: Digest): Promise<Uint8Array | undefined>;
  /** Stores `bytes` under `digest` after verifying them; idempotent; atomic for readers. */
  put(digest: Digest, bytes: Uint8Array): Promise<void>;
  /** Cheap presence check; may answer true for an entry a later `get` finds corrupt. */
  has(digest: Digest): Promise<boolean>;
  /** Removes the entry from this store (all tiers for a tiered store). */
  delete(digest: Digest): Promise<void>;
  stats(): Promise<CacheStats>;
  /** Evicts least-recently-used entries until at most `maxBytes` remain (default: the configured bound). */
  gc?(maxBytes?: number): Promise<GcResult>;
  close?(): Promise<void>;
}

/** Small string records (usually JSON). Keys are built by keys.ts from digests and options. */
export interface MetaStore {
  get(key: string): Promise<string | undefined>;
  /** `ttlMs` undefined: kept until evicted or deleted. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

export interface GcResult {
  removed: number;
  freedBytes: number;
  remainingBytes: number;
}
