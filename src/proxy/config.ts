/**
 * Typed configuration of the proxy core, with documented defaults. Parsed and validated once, in the
 * composition root (`main.ts` / `../cli.ts`); nothing below reads flags or the environment.
 */
import { createHash } from 'node:crypto';
import { SOCI_DEFAULTS } from '../oci/media-types.js';

export type IndexMode = 'wait' | 'background' | 'off';
export type PlainTags = 'soci' | 'original';

export interface SociOptions {
  /** Uncompressed bytes per span. Default 4 MiB. */
  spanSize: number;
  /** Layers whose compressed descriptor size is below this get no zTOC. Default 10 MiB. */
  minLayerSize: number;
  /** `build_tool_identifier` of zTOCs and the SOCI index. Default `AWS SOCI CLI v0.2`. */
  buildToolIdentifier: string;
  /** Emit the `com.amazon.soci.span-size` annotation (soci v0.12+). Default true. */
  spanSizeAnnotation: boolean;
  /** Add `com.amazon.soci.disable-xattrs` where a layer needs no xattrs (`--optimizations xattr`). Default false. */
  xattrOptimization: boolean;
  /** Gzip-bomb guard passed to the indexer: no zTOC for a layer inflating past this (default 64 GiB). */
  maxUncompressedSize?: number;
}

export interface ProxyCoreConfig {
  soci: SociOptions;
  /** `wait`: hold a first request up to `indexWaitMs`; `background`: answer at once; `off`: never index. */
  indexMode: IndexMode;
  indexWaitMs: number;
  /** How long a failed build keeps the image on its original manifest before the next attempt. Default 60 s. */
  retryFailedAfterMs: number;
  /** What a plain tag answers: the SOCI-enabled image (`soci`, transparent) or the original. */
  plainTags: PlainTags;
  /** `<tag><suffix>` always answers the SOCI-enabled image of `<tag>`. Default `-soci`. */
  sociTagSuffix: string;
  /** Answer `/referrers/<original digest>` with SOCI index v1 descriptors. Default true. */
  referrers: boolean;
  /** How long a tag → digest resolution may be reused (0 = always ask upstream). Default 0. */
  tagCacheMs: number;
  /** How long an upstream "this client may read this repository" answer is reused. Default 60 s. */
  authzCacheMs: number;
  /** Largest manifest or index accepted from upstream. Default 4 MiB. */
  maxManifestBytes: number;
  /** Most layers per manifest / manifests per index accepted for indexing. */
  maxLayers: number;
  maxManifests: number;
}

export const DEFAULT_PROXY_CONFIG: ProxyCoreConfig = {
  soci: {
    spanSize: SOCI_DEFAULTS.spanSize,
    minLayerSize: SOCI_DEFAULTS.minLayerSize,
    buildToolIdentifier: SOCI_DEFAULTS.buildToolIdentifier,
    spanSizeAnnotation: true,
    xattrOptimization: false,
  },
  indexMode: 'wait',
  indexWaitMs: 120_000,
  retryFailedAfterMs: 60_000,
  plainTags: 'soci',
  sociTagSuffix: '-soci',
  referrers: true,
  tagCacheMs: 0,
  authzCacheMs: 60_000,
  maxManifestBytes: 4 * 1024 * 1024,
  maxLayers: 1000,
  maxManifests: 256,
};

/** A short stable key of the options that change derived bytes (part of every cache key; no spaces). */
export function sociOptionsKey(o: SociOptions): string {
  const parts = [o.spanSize, o.minLayerSize, o.buildToolIdentifier, o.spanSizeAnnotation ? 1 : 0, o.xattrOptimization ? 1 : 0, 'v1'].join('|');
  return createHash('sha256').update(parts).digest('hex').slice(0, 16);
}
