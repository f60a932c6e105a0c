/**
 * Builds the SOCI-enabled image for one upstream manifest or index: fetch every platform manifest, index
 * each large-enough layer once per fleet (single flight on the layer digest through the cache), build a
 * SOCI index manifest v2 (and v1, for the referrers API) per platform, and the SOCI-enabled image index
 * around them. Every document is stored before the `soci:` record that makes the result visible, so no
 * half-built result is ever served.
 *
 * Failure policy: a layer that is skipped for a deterministic reason (media type, tar features, size) is
 * recorded and the image is built without its zTOC. A layer that fails (upstream error, digest mismatch,
 * corrupt bytes) fails the whole build: nothing is recorded for the image, clients get the original, and
 * a short-lived `fail:` record spaces out retries.
 *
 * With a blob cache, each layer read for indexing is also written to it and kept once the indexer proved
 * its digest, so the layer pulls that follow the index are served locally without a second upstream read.
 */
import type { Logger } from 'pino';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, isIndexType, isManifestType, MediaType } from '../oci/media-types.js';
import { sha256 } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';
import type { Descriptor, Index, Manifest, Platform } from '../oci/types.js';
import { parseIndex, parseManifest } from '../oci/go-json.js';
import type { ClientCredentials, LayerIndexerPort, UpstreamRegistry } from './contracts.js';
import type { ArtifactRecords, LayerRecord, SociRecord } from './artifacts.js';
import type { SociOptions } from './config.js';
import { synthesizeSociImage, type PlatformInput } from './synthesize.js';
import type { ProxyEvents } from './events.js';
import { BlobCache } from './blob-cache.js';

export interface SociJobDeps {
  records: ArtifactRecords;
  indexer: LayerIndexerPort;
  soci: SociOptions;
  logger: Logger;
  events: ProxyEvents;
  maxManifestBytes: number;
  maxLayers: number;
  maxManifests: number;
  /** Layers indexed at once per job. */
  layerConcurrency: number;
  /** Keeps each layer read for indexing (pull-through cache); absent: layers are not kept. */
  blobCache?: BlobCache | undefined;
}

export interface UpstreamDocument {
  mediaType: string;
  digest: string;
  bytes: Uint8Array;
}

/** Platforms never indexed: buildkit attestation manifests and other non-runnable entries. */
function indexable(desc: Descriptor): boolean {
  if (!isManifestType(desc.mediaType)) return false;
  if (desc.platform && (desc.platform.os === 'unknown' || desc.platform.architecture === 'unknown')) return false;
  if (desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') return false;
  return true;
}

/** True when the upstream already serves a SOCI-enabled image; it is then passed through untouched. */
export function isSociEnabled(doc: UpstreamDocument): boolean {
  if (isIndexType(doc.mediaType)) {
    const idx = safeParse(() => parseIndex(doc.bytes));
    // Older copiers (skopeo 1.9) drop `artifactType` from index descriptors; the SOCI index descriptor's
    // `image-manifest-digest` annotation survives them, so it counts too.
    return !!idx?.manifests.some(
      (d) => d.artifactType === MediaType.sociIndexV2 || d.annotations?.['com.amazon.soci.index-digest'] !== undefined || d.annotations?.['com.amazon.soci.image-manifest-digest'] !== undefined,
    );
  }
  if (isManifestType(doc.mediaType)) {
    const m = safeParse(() => parseManifest(doc.bytes));
    return m?.annotations?.['com.amazon.soci.index-digest'] !== undefined || m?.config.mediaType === MediaType.sociIndexV2;
  }
  return false;
}

function safeParse<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

export async function buildSociImage(
  deps: SociJobDeps,
  upstream: UpstreamRegistry,
  repo: string,
  doc: UpstreamDocument,
  credentials: ClientCredentials,
): Promise<SociRecord> {
  const started = Date.now();
  const { records, logger } = deps;
  const platforms: PlatformInput[] = [];

  const fetchManifest = async (digest: string): Promise<{ mediaType: string; bytes: Uint8Array; manifest: Manifest }> => {
    const r = await upstream.getManifest(repo, digest, { accept: [MediaType.ociManifest, MediaType.dockerManifest], method: 'GET', credentials });
    if (!r.bytes) throw new OciError('MANIFEST_INVALID', `upstream sent no body for ${digest}`);
    if (r.bytes.length > deps.maxManifestBytes) throw new OciError('MANIFEST_INVALID', `manifest ${digest} exceeds ${deps.maxManifestBytes} bytes`);
    if (sha256(r.bytes) !== digest) throw new OciError('DIGEST_INVALID', `upstream manifest bytes do not match ${digest}`);
    return { mediaType: r.mediaType, bytes: r.bytes, manifest: parseManifest(r.bytes) };
  };

  if (isIndexType(doc.mediaType)) {
    const index: Index = parseIndex(doc.bytes);
    if (index.manifests.length > deps.maxManifests) throw new OciError('MANIFEST_INVALID', `index lists ${index.manifests.length} manifests (max ${deps.maxManifests})`);
    for (const desc of index.manifests) {
      if (!indexable(desc)) continue;
      const m = await fetchManifest(desc.digest);
      platforms.push({ descriptor: desc, mediaType: m.mediaType, bytes: m.bytes, manifest: m.manifest, platform: desc.platform });
    }
  } else if (isManifestType(doc.mediaType)) {
    const manifest = parseManifest(doc.bytes);
    const platform = await fetchPlatform(upstream, repo, manifest, credentials);
    platforms.push({
      descriptor: { mediaType: doc.mediaType, digest: doc.digest, size: doc.bytes.length },
      mediaType: doc.mediaType,
      bytes: doc.bytes,
      manifest,
      platform,
    });
  } else {
    throw new OciError('MANIFEST_INVALID', `cannot index media type ${doc.mediaType}`);
  }

  const skipped: SociRecord['skippedLayers'] = [];
  for (const p of platforms) {
    if (p.manifest.layers.length > deps.maxLayers) throw new OciError('MANIFEST_INVALID', `manifest lists ${p.manifest.layers.length} layers (max ${deps.maxLayers})`);
    p.layers = await mapLimit(p.manifest.layers, deps.layerConcurrency, async (layer) => {
      if (layer.size < deps.soci.minLayerSize) {
        return { status: 'skipped', code: 'BELOW_MIN_SIZE', reason: `layer is ${layer.size} bytes, below the ${deps.soci.minLayerSize}-byte minimum` } as LayerRecord;
      }
      return indexLayerOnce(deps, upstream, repo, layer, credentials);
    });
    p.manifest.layers.forEach((layer, i) => {
      const r = p.layers?.[i];
      if (r?.status === 'skipped' && r.code !== 'BELOW_MIN_SIZE') skipped.push({ digest: layer.digest, code: r.code, reason: r.reason });
    });
  }

  const out = synthesizeSociImage(doc, platforms, deps.soci);
  // Store every document (and the `{}` config) before the record that makes the result visible.
  await records.cache.putBlob(EMPTY_JSON_DIGEST, EMPTY_JSON);
  for (const d of out.docs) await records.putDoc(d.digest, d.bytes, { mediaType: d.mediaType, size: d.bytes.length, source: d.source });
  const referrers: SociRecord['referrers'] = {};
  for (const [manifestDigest, descs] of Object.entries(out.referrers)) {
    referrers[manifestDigest] = descs;
    await records.putReferrers(manifestDigest, descs);
  }
  const rec: SociRecord = {
    digest: out.top.digest,
    mediaType: out.top.mediaType,
    size: out.top.bytes.length,
    referrers,
    blobs: [
      ...out.docs.map((d) => d.digest),
      ...platforms.flatMap((p) => (p.layers ?? []).flatMap((l) => (l.status === 'indexed' ? [l.ztocDigest] : []))),
    ],
    indexedLayers: platforms.reduce((n, p) => n + (p.layers?.filter((l) => l.status === 'indexed').length ?? 0), 0),
    skippedLayers: skipped,
  };
  await records.putSoci(doc.digest, rec);
  deps.events.publish({ type: 'image-indexed', upstream: upstream.name, repo, digest: doc.digest, ms: Date.now() - started, indexedLayers: rec.indexedLayers });
  logger.info({ repo, digest: doc.digest, soci: rec.digest, indexedLayers: rec.indexedLayers, skipped: skipped.length, ms: Date.now() - started }, 'SOCI-enabled image built');
  return rec;
}

async function fetchPlatform(upstream: UpstreamRegistry, repo: string, manifest: Manifest, credentials: ClientCredentials): Promise<Platform> {
  const r = await upstream.getBlob(repo, manifest.config.digest, { method: 'GET', credentials });
  if (!r.body) throw new OciError('BLOB_UNKNOWN', 'config blob has no body');
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of r.body) {
    n += c.length;
    if (n > 4 * 1024 * 1024) {
      r.body.destroy?.();
      throw new OciError('MANIFEST_INVALID', 'image config larger than 4 MiB');
    }
    chunks.push(c);
  }
  const bytes = Buffer.concat(chunks);
  if (sha256(bytes) !== manifest.config.digest) throw new OciError('DIGEST_INVALID', 'image config does not match its digest');
  const cfg = JSON.parse(bytes.toString('utf8')) as { architecture?: unknown; os?: unknown; variant?: unknown };
  const platform: Platform = { architecture: typeof cfg.architecture === 'string' ? cfg.architecture : 'amd64', os: typeof cfg.os === 'string' ? cfg.os : 'linux' };
  if (typeof cfg.variant === 'string' && cfg.variant) platform.variant = cfg.variant;
  return platform;
}

/** Indexes one layer once per fleet; returns its record (from the cache when another request did the work). */
export async function indexLayerOnce(deps: SociJobDeps, upstream: UpstreamRegistry, repo: string, layer: Descriptor, credentials: ClientCredentials): Promise<LayerRecord> {
  const { records } = deps;
  const cached = await records.layer(layer.digest);
  if (cached) {
    deps.events.publish({ type: 'layer-cache', hit: true });
    return cached;
  }
  return records.cache.runOnce(records.layerKey(layer.digest), { lookup: () => records.layer(layer.digest), compute: async () => {
    deps.events.publish({ type: 'layer-cache', hit: false });
    const started = Date.now();
    const r = await upstream.getBlob(repo, layer.digest, { method: 'GET', credentials });
    if (!r.body || r.status !== 200) throw new OciError('UNAVAILABLE', `upstream answered ${r.status} for layer ${layer.digest}`);
    const sink = deps.blobCache?.sink(layer.digest, layer.size);
    let result;
    try {
      result = await deps.indexer.index(sink ? BlobCache.tee(r.body, sink) : r.body, {
        mediaType: layer.mediaType,
        spanSize: deps.soci.spanSize,
        buildToolIdentifier: deps.soci.buildToolIdentifier,
        expectedDigest: layer.digest,
        expectedSize: layer.size,
        ...(deps.soci.maxUncompressedSize !== undefined ? { maxUncompressedSize: deps.soci.maxUncompressedSize } : {}),
      });
      // Only an indexed result proves the digest of every byte the indexer (and so the sink) saw.
      if (result.status === 'indexed' && result.layerDigest === layer.digest) sink?.complete();
    } finally {
      sink?.abort();
      r.body.destroy?.();
    }
    let rec: LayerRecord;
    if (result.status === 'indexed') {
      await records.cache.putBlob(result.ztocDigest, result.ztoc);
      await records.putDoc(result.ztocDigest, result.ztoc, {
        mediaType: MediaType.sociLayer,
        size: result.ztoc.length,
        source: { kind: 'blob', digest: layer.digest },
        layer: { mediaType: layer.mediaType, size: layer.size },
      });
      rec = { status: 'indexed', ztocDigest: result.ztocDigest, ztocSize: result.ztoc.length, needsXattrs: result.needsXattrs, spans: result.spanCount, files: result.fileCount };
      // In-process callers also get the bytes (not persisted in the record): a zTOC larger than a tiny
      // cache can then still be served to the request that rebuilt it.
      Object.defineProperty(rec, 'ztocBytes', { value: result.ztoc, enumerable: false });
    } else {
      rec = { status: 'skipped', code: result.code, reason: result.reason };
      deps.logger.warn({ layer: layer.digest, code: result.code, reason: result.reason }, 'layer served without a zTOC');
    }
    await records.putLayer(layer.digest, rec);
    deps.events.publish({ type: 'layer-indexed', status: rec.status, ms: Date.now() - started, bytes: layer.size });
    return rec;
  } });
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: unknown;
  const run = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, run));
  if (failure !== undefined) throw failure;
  return out;
}

