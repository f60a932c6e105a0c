/**
 * From an upstream image and the per-layer indexing outcomes to every document the proxy serves: the
 * SOCI index manifests (v2 for discovery through the manifest annotation, v1 for the referrers API), the
 * rewritten image manifests and the SOCI-enabled image index (`../indexer/soci`, byte-exact Go JSON).
 * Each document records the upstream manifest it derives from, which the access check asks about.
 * An image where no layer got a zTOC is answered as it is (its own bytes, unchanged).
 */
import { buildSociImage, buildSociIndex, type LayerZtoc } from '../indexer/soci/index.js';
import { MediaType } from '../oci/media-types.js';
import type { Descriptor, Manifest, Platform } from '../oci/types.js';
import type { LayerRecord, SourceRef } from './artifacts.js';
import type { SociOptions } from './config.js';

export interface PlatformInput {
  /** The platform manifest's descriptor (from the index, or made for a single-manifest image). */
  descriptor: Descriptor;
  mediaType: string;
  bytes: Uint8Array;
  manifest: Manifest;
  platform: Platform | undefined;
  /** Indexing outcome per layer, in manifest order. */
  layers?: LayerRecord[];
}

export interface SynthesizedDoc {
  digest: string;
  mediaType: string;
  bytes: Uint8Array;
  source: SourceRef;
}

export interface Synthesized {
  top: SynthesizedDoc;
  docs: SynthesizedDoc[];
  /** Original platform-manifest digest → SOCI index v1 descriptors (the referrers answer). */
  referrers: Record<string, Descriptor[]>;
}

export function synthesizeSociImage(original: { mediaType: string; digest: string; bytes: Uint8Array }, platforms: readonly PlatformInput[], soci: SociOptions): Synthesized {
  const docs: SynthesizedDoc[] = [];
  const referrers: Record<string, Descriptor[]> = {};
  const inputs = [];
  const indexOpts = {
    spanSize: soci.spanSize,
    spanSizeAnnotation: soci.spanSizeAnnotation,
    xattrOptimization: soci.xattrOptimization,
    buildToolIdentifier: soci.buildToolIdentifier,
  };
  for (const p of platforms) {
    const ztocs = new Map<string, LayerZtoc>();
    p.manifest.layers.forEach((layer, i) => {
      const r = p.layers?.[i];
      if (r?.status === 'indexed') ztocs.set(layer.digest, { digest: r.ztocDigest, size: r.ztocSize, needsXattrs: r.needsXattrs });
    });
    if (ztocs.size === 0) {
      inputs.push({ manifestBytes: p.bytes, ...(p.platform ? { platform: p.platform } : {}) });
      continue;
    }
    const source: SourceRef = { kind: 'manifest', digest: p.descriptor.digest };
    const v2 = buildSociIndex(p.manifest.layers, ztocs, { ...indexOpts, version: 'v2' });
    const v1 = buildSociIndex(p.manifest.layers, ztocs, { ...indexOpts, version: 'v1', subject: { mediaType: p.mediaType, digest: p.descriptor.digest, size: p.bytes.length } });
    docs.push({ digest: v2.digest, mediaType: MediaType.ociManifest, bytes: v2.bytes, source });
    docs.push({ digest: v1.digest, mediaType: MediaType.ociManifest, bytes: v1.bytes, source });
    referrers[p.descriptor.digest] = [
      { mediaType: MediaType.ociManifest, digest: v1.digest, size: v1.size, ...(p.platform ? { platform: p.platform } : {}), artifactType: MediaType.sociIndexV1 },
    ];
    inputs.push({ manifestBytes: p.bytes, sociIndex: { bytes: v2.bytes, digest: v2.digest, size: v2.size }, ...(p.platform ? { platform: p.platform } : {}) });
  }
  if (docs.length === 0) {
    const top = { digest: original.digest, mediaType: original.mediaType, bytes: original.bytes, source: { kind: 'manifest' as const, digest: original.digest } };
    return { top, docs: [top], referrers };
  }
  const single = platforms.length === 1 && platforms[0]?.descriptor.digest === original.digest;
  const image = buildSociImage({ mediaType: original.mediaType, bytes: original.bytes, ...(single && platforms[0]?.platform ? { platform: platforms[0].platform } : {}) }, inputs);
  const originalOf = new Map<string, string>();
  for (const [orig, rewritten] of image.rewritten) originalOf.set(rewritten, orig);
  for (const m of image.manifests) {
    docs.push({ digest: m.digest, mediaType: m.mediaType, bytes: m.bytes, source: { kind: 'manifest', digest: originalOf.get(m.digest) ?? original.digest } });
  }
  const top: SynthesizedDoc = { digest: image.index.digest, mediaType: image.index.mediaType, bytes: image.index.bytes, source: { kind: 'manifest', digest: original.digest } };
  docs.push(top);
  return { top, docs, referrers };
}
