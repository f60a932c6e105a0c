/**
 * A short-lived tag → digest memory (`--tag-cache SECONDS`, `tagCacheMs`), for upstreams that rate-limit
 * manifest requests (Docker Hub counts them). Tags go upstream first (STYLE.md §5): with the default 0 this
 * cache is off and every by-tag request asks upstream. When on, a resolution is reused for at most
 * `ttlMs`, and only by the same client credential: the key holds (upstream, repository, tag, the Accept
 * set, a hash of the client's Authorization), so one client's resolution never answers another client,
 * and a client whose credentials the upstream would refuse is never told a digest. Only the digest, media
 * type and size are kept; bytes are always fetched by digest.
 * Concurrent resolutions of one key share one upstream HEAD whether or not the cache is on (16 clients
 * asking for `python:3.12` at once cost the upstream one request): a request that arrives while a HEAD for
 * the same key is in flight gets that HEAD's answer, which the upstream produced after the request began or
 * at most one round trip before it.
 */
import { LRUCache } from 'lru-cache';
import { credentialKey, type ClientCredentials } from './contracts.js';

export interface TagResolution {
  mediaType: string;
  digest: string;
  size: number;
}

export interface TagCacheKey {
  upstream: string;
  repo: string;
  tag: string;
  /** The Accept list the resolution was made with (different types may resolve differently). */
  accept: readonly string[];
  credentials: ClientCredentials;
}

export class TagCache {
  readonly #lru: LRUCache<string, TagResolution> | undefined;
  readonly #inflight = new Map<string, Promise<TagResolution>>();

  constructor(opts: { ttlMs: number; max?: number }) {
    this.#lru = opts.ttlMs > 0 ? new LRUCache({ max: opts.max ?? 10_000, ttl: opts.ttlMs }) : undefined;
  }

  get enabled(): boolean {
    return this.#lru !== undefined;
  }

  get(k: TagCacheKey): TagResolution | undefined {
    return this.#lru?.get(keyOf(k));
  }

  set(k: TagCacheKey, r: TagResolution): void {
    this.#lru?.set(keyOf(k), { mediaType: r.mediaType, digest: r.digest, size: r.size });
  }

  /**
   * Resolves through the cache: a fresh entry is returned without calling `resolve`; otherwise `resolve`
   * runs (upstream) and its answer is remembered.
   */
  async resolve(k: TagCacheKey, resolve: () => Promise<TagResolution>): Promise<{ resolution: TagResolution; cached: boolean }> {
    const key = keyOf(k);
    const hit = this.#lru?.get(key);
    if (hit) return { resolution: hit, cached: true };
    let p = this.#inflight.get(key);
    if (p === undefined) {
      p = resolve().finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
      p.catch(() => undefined);
    }
    const r = await p;
    this.#lru?.set(key, { mediaType: r.mediaType, digest: r.digest, size: r.size });
    return { resolution: r, cached: false };
  }
}

function keyOf(k: TagCacheKey): string {
  const who = credentialKey(k.credentials);
  const accept = [...new Set(k.accept)].sort().join(',');
  return [k.upstream, k.repo, k.tag, accept, who].join('\u0000');
}
