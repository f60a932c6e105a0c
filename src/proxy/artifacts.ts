/**
 * Typed records the proxy keeps in the artifact cache. Bytes are stored by digest (verified by the cache
 * on write and read); these small JSON records say what a digest is and where it came from.
 *
 * Keys (all derived from digests and the options key, never from tags):
 *   doc:<digest>                     a synthesized document or blob: media type + the upstream source it derives from
 *   ztoc:<layer digest>:<opts>       the outcome of indexing one layer: a zTOC digest, or a deterministic skip
 *   soci:<upstream digest>:<opts>    the SOCI-enabled result of one upstream manifest or index
 *   fail:<upstream digest>:<opts>    a recent failed build (short TTL), so a broken image is not rebuilt per request
 */
import type { ArtifactCache } from './contracts.js';
import type { Descriptor } from '../oci/types.js';
import type { SkipCode } from '../oci/errors.js';

/** What a synthesized digest derives from: reading it requires the client may read this source upstream. */
export interface SourceRef {
  kind: 'manifest' | 'blob';
  digest: string;
}

export interface DocRecord {
  mediaType: string;
  size: number;
  source: SourceRef;
  /** An upstream manifest kept by digest (immutable content, served cache-first after the access check). */
  upstream?: boolean;
  /** zTOCs only: the image layer they index, so a zTOC lost from the cache can be rebuilt on demand. */
  layer?: { mediaType: string; size: number };
}

export type LayerRecord =
  | { status: 'indexed'; ztocDigest: string; ztocSize: number; needsXattrs: boolean; spans: number; files: number }
  | { status: 'skipped'; code: SkipCode; reason: string };

export interface SociRecord {
  /** The SOCI-enabled top-level document served for the upstream digest (an OCI index). */
  digest: string;
  mediaType: string;
  size: number;
  /** Per original platform-manifest digest: SOCI index v1 descriptors for the referrers API. */
  referrers: Record<string, Descriptor[]>;
  /** Every digest the result needs in the cache (documents and zTOCs); a record missing any is a miss. */
  blobs: string[];
  indexedLayers: number;
  skippedLayers: Array<{ digest: string; code: string; reason: string }>;
}

export class ArtifactRecords {
  readonly #cache: ArtifactCache;
  readonly #optsKey: string;

  constructor(cache: ArtifactCache, optsKey: string) {
    this.#cache = cache;
    this.#optsKey = optsKey;
  }

  get cache(): ArtifactCache {
    return this.#cache;
  }

  async doc(digest: string): Promise<DocRecord | undefined> {
    return parse<DocRecord>(await this.#cache.getMeta(`doc:${digest}`));
  }

  async putDoc(digest: string, bytes: Uint8Array, rec: DocRecord): Promise<void> {
    await this.#cache.putBlob(digest, bytes);
    await this.#cache.setMeta(`doc:${digest}`, JSON.stringify(rec));
  }

  layerKey(layerDigest: string): string {
    return `ztoc:${layerDigest}:${this.#optsKey}`;
  }

  /**
   * The recorded outcome for a layer. An `indexed` record whose zTOC is no longer in the cache (evicted by
   * the size bound or `cache gc`), or whose `doc:` record was lost, counts as a miss, so the layer is indexed again rather than pointing
   * clients at a missing blob.
   */
  async layer(layerDigest: string): Promise<LayerRecord | undefined> {
    const rec = parse<LayerRecord>(await this.#cache.getMeta(this.layerKey(layerDigest)));
    if (rec?.status === 'indexed' && !(await this.#present(rec.ztocDigest))) return undefined;
    return rec;
  }

  async putLayer(layerDigest: string, rec: LayerRecord): Promise<void> {
    await this.#cache.setMeta(this.layerKey(layerDigest), JSON.stringify(rec));
  }

  sociKey(upstreamDigest: string): string {
    return `soci:${upstreamDigest}:${this.#optsKey}`;
  }

  /** The SOCI-enabled result of an upstream digest; a miss when any blob it needs was evicted. */
  async soci(upstreamDigest: string): Promise<SociRecord | undefined> {
    const rec = parse<SociRecord>(await this.#cache.getMeta(this.sociKey(upstreamDigest)));
    if (!rec || !Array.isArray(rec.blobs)) return undefined;
    for (const d of rec.blobs) if (!(await this.#present(d))) return undefined;
    return rec;
  }

  /** A synthesized artifact is servable only with both its bytes and its `doc:` record. */
  async #present(digest: string): Promise<boolean> {
    return (await this.#cache.hasBlob(digest)) && (await this.#cache.getMeta(`doc:${digest}`)) !== undefined;
  }

  async putSoci(upstreamDigest: string, rec: SociRecord): Promise<void> {
    await this.#cache.setMeta(this.sociKey(upstreamDigest), JSON.stringify(rec));
  }

  /** Referrers of an original platform manifest, written beside the SOCI record. */
  async referrers(manifestDigest: string): Promise<Descriptor[] | undefined> {
    return parse<Descriptor[]>(await this.#cache.getMeta(`referrers:${manifestDigest}:${this.#optsKey}`));
  }

  async putReferrers(manifestDigest: string, descs: Descriptor[]): Promise<void> {
    await this.#cache.setMeta(`referrers:${manifestDigest}:${this.#optsKey}`, JSON.stringify(descs));
  }

  async recentFailure(upstreamDigest: string): Promise<string | undefined> {
    return this.#cache.getMeta(`fail:${upstreamDigest}:${this.#optsKey}`);
  }

  async putFailure(upstreamDigest: string, reason: string, ttlMs: number): Promise<void> {
    await this.#cache.setMeta(`fail:${upstreamDigest}:${this.#optsKey}`, reason, ttlMs);
  }
}

function parse<T>(s: string | undefined): T | undefined {
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s) as T;
  } catch {
    return undefined;
  }
}
