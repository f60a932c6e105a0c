/**
 * Metadata keys and records, built from digests and index options only — never from tags or repository
 * names, so one result serves every repository and tag that points at the same content. A key embeds
 * every option that changes the bytes of the result (span size, minimum layer size, builder version), so
 * changing an option or upgrading the builder never returns a stale artifact. Records are JSON with a
 * version field so a future format can coexist with the old one.
 */
import type { Digest } from '../oci/digest.js';
import type { SkipCode } from '../oci/errors.js';

/** Options that determine the SOCI artifacts built for an image. */
export interface IndexOptionsKey {
  spanSize: number;
  minLayerSize: number;
  /** Builder identity and version, e.g. 'soci-proxy 0.1.0'. */
  builderVersion: string;
}

function opt(s: string): string {
  return encodeURIComponent(s);
}

/** "upstream manifest digest + options → SOCI-enabled result". */
export function sociResultKey(manifestDigest: Digest, o: IndexOptionsKey): string {
  return `soci-result:v1:${manifestDigest}:span=${o.spanSize}:min=${o.minLayerSize}:builder=${opt(o.builderVersion)}`;
}

/** "layer digest + span size + builder → zTOC digest or skip reason". */
export function ztocKey(layerDigest: Digest, o: Pick<IndexOptionsKey, 'spanSize' | 'builderVersion'>): string {
  return `ztoc:v1:${layerDigest}:span=${o.spanSize}:builder=${opt(o.builderVersion)}`;
}

/** The value behind `sociResultKey`. */
export interface SociResultRecord {
  v: 1;
  /** Digest of the SOCI index manifest. */
  sociIndex: Digest;
  /** Digest of the SOCI-enabled image index / rewritten manifest served in place of the upstream one. */
  enabled?: Digest;
  /** Media type of `enabled`. */
  mediaType?: string;
}

/** The value behind `ztocKey`: a zTOC digest, or why the layer has none. */
export type ZtocRecord = { v: 1; ztoc: Digest; size: number } | { v: 1; skip: SkipCode; message: string };

export function encodeRecord(r: SociResultRecord | ZtocRecord): string {
  return JSON.stringify(r);
}

/** Parses a record; undefined for anything that is not a version-1 record. */
export function decodeRecord<T extends SociResultRecord | ZtocRecord>(s: string | undefined): T | undefined {
  if (s === undefined) return undefined;
  try {
    const r = JSON.parse(s) as { v?: unknown };
    return r && typeof r === 'object' && r.v === 1 ? (r as T) : undefined;
  } catch {
    return undefined;
  }
}
