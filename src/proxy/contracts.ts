/**
 * The narrow interfaces the proxy core consumes. Implementations live elsewhere (`./upstream` over
 * undici, `../cache` tiers, `../indexer` worker pool) and are checked against these with `satisfies` in
 * the composition root; tests pass real local servers through the same seams.
 *
 * Contract of the proxy (the issue text, condensed):
 * - Digest-addressed content is immutable and cache-first; tags always go upstream first (a short tag
 *   cache may front rate-limited upstreams).
 * - Synthesized artifacts are stored only when complete and verified; a client may receive one only after
 *   the upstream has let that client's credentials read its source (see `authz.ts`).
 * - An upstream digest always yields exactly the upstream bytes.
 */
import { createHash } from 'node:crypto';
import type { LayerIndexResult, IndexLayerOptions } from '../indexer/layer-indexer.js';

/** The client's credentials as received (the raw `Authorization` header), passed to the upstream. */
export interface ClientCredentials {
  authorization?: string | undefined;
}

/** A stable, non-secret identity of the client's credentials for cache keys (never the header itself). */
export function credentialKey(c: ClientCredentials): string {
  return c.authorization ? createHash('sha256').update(c.authorization).digest('hex') : 'anonymous';
}

export interface ManifestResponse {
  /** From the upstream's Content-Type, never from the body. */
  mediaType: string;
  digest: string;
  size: number;
  /** Absent for HEAD. */
  bytes?: Uint8Array | undefined;
}

export interface BlobResponse {
  /** 200 or 206 (the upstream answered the Range), or 200 with `rangeIgnored` when it sent the whole blob. */
  status: number;
  size?: number | undefined;
  contentRange?: string | undefined;
  contentType?: string | undefined;
  /** Absent for HEAD. The consumer must read it to the end or destroy it. */
  body?: (AsyncIterable<Uint8Array> & { destroy?(err?: Error): void }) | undefined;
  rangeIgnored?: boolean;
}

/** One configured upstream registry, as the proxy core sees it. */
export interface UpstreamRegistry {
  readonly name: string;
  getManifest(repo: string, reference: string, opts: { accept: readonly string[]; method: 'GET' | 'HEAD'; credentials: ClientCredentials; signal?: AbortSignal }): Promise<ManifestResponse>;
  getBlob(repo: string, digest: string, opts: { method: 'GET' | 'HEAD'; range?: string | undefined; credentials: ClientCredentials; signal?: AbortSignal }): Promise<BlobResponse>;
  listTags(repo: string, query: { n?: number; last?: string }, credentials: ClientCredentials): Promise<{ tags: string[]; next?: { n?: number; last?: string } | undefined }>;
}

/** Maps a request's repository name (and containerd's `ns=`) to a configured upstream. */
export interface UpstreamRouter {
  route(name: string, ns?: string): { upstream: UpstreamRegistry; repository: string } | undefined;
  /** The first configured upstream (for /v2/ checks). */
  readonly defaultUpstream: UpstreamRegistry | undefined;
}

/** Digest-addressed bytes plus small metadata records, shared by replicas when Redis is configured. */
export interface ArtifactCache {
  getBlob(digest: string): Promise<Uint8Array | undefined>;
  /** Cheap presence check (an entry may still turn out corrupt on `getBlob`). */
  hasBlob(digest: string): Promise<boolean>;
  /** Stores bytes that the caller has verified hash to `digest`. */
  putBlob(digest: string, bytes: Uint8Array): Promise<void>;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string, ttlMs?: number): Promise<void>;
  /**
   * Runs `compute` once per key across concurrent callers (and replicas sharing Redis). `lookup` reads a
   * finished result from the cache (a hit ends the flight); `compute` must commit its result to the cache
   * before resolving, so that waiters elsewhere find it with `lookup`.
   */
  runOnce<T>(key: string, task: { lookup(): Promise<T | undefined>; compute(): Promise<T> }): Promise<T>;
}

export interface LayerIndexerPort {
  index(source: AsyncIterable<Uint8Array>, opts: IndexLayerOptions): Promise<LayerIndexResult>;
}
