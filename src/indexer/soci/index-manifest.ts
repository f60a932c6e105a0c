/**
 * The SOCI index manifest (soci-format.md §1.1–1.3, v1 in §3), as soci's `IndexBuilder.build` +
 * `MarshalIndex` write it: an OCI image manifest with `mediaType` set, no top-level `artifactType`, the
 * `{}` config whose mediaType is the index version (v2 or v1), one `application/octet-stream` zTOC
 * descriptor per indexed layer in image-layer order (layers without a zTOC skipped; a layer listed twice
 * in the image gets two entries, as soci's per-layer loop gives), `subject` only for v1, and the
 * build-tool annotation. Per-zTOC annotations: image-layer-digest, image-layer-mediaType, span-size
 * (soci ≥ v0.12; on by default) and disable-xattrs when the xattr optimization is asked for and the layer
 * has no `SCHILY.xattr.*` record and no opaque-whiteout entry (`shouldDisableXattrs`). No prefetch
 * artifacts: v0.10–v0.12 snapshotters would take them for zTOCs (§1.2). The bytes are Go-marshalled, so
 * the snapshotter's re-marshal reproduces them and its digest check passes.
 */
import { sha256, type Digest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { marshalManifest } from '../../oci/go-json.js';
import { Annotation, EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, SOCI_DEFAULTS } from '../../oci/media-types.js';
import type { Descriptor, Manifest } from '../../oci/types.js';
import type { FileMetadata } from '../types.js';

/** A zTOC built for one image layer. */
export interface LayerZtoc {
  digest: string;
  size: number;
  /**
   * True when the layer has a `SCHILY.xattr.*` PAX record or a `.wh..wh..opq` entry (see
   * `shouldDisableXattrs`). Unknown (undefined) counts as true, so disable-xattrs is never set blindly.
   */
  needsXattrs?: boolean;
}

export interface SociIndexOptions {
  /** `v2` (default; discovered through the image manifest's annotation) or `v1` (needs `subject`). */
  version?: 'v1' | 'v2';
  /** v1 only: the image manifest the index refers to; only its mediaType, digest and size are kept. */
  subject?: Descriptor;
  /** Span size written in the span-size annotation (default 4 MiB). */
  spanSize?: number;
  /** Write `com.amazon.soci.span-size` (soci ≥ v0.12.0 does; default true). */
  spanSizeAnnotation?: boolean;
  /** soci's `--optimizations xattr` (default false). */
  xattrOptimization?: boolean;
  /** Index and zTOC build-tool identifier (default `AWS SOCI CLI v0.2`). */
  buildToolIdentifier?: string;
}

export interface SociIndexResult {
  bytes: Uint8Array;
  digest: Digest;
  size: number;
  manifest: Manifest;
}

const OPAQUE_WHITEOUT = '.wh..wh..opq';
const XATTR_PREFIX = 'SCHILY.xattr.';

/** soci's `shouldDisableXattrs`: no entry has an xattr record and none is an opaque-directory marker. */
export function shouldDisableXattrs(toc: readonly FileMetadata[]): boolean {
  return !toc.some((e) => e.name.endsWith(OPAQUE_WHITEOUT) || e.xattrs.some(([k]) => k.startsWith(XATTR_PREFIX)));
}

/** The 2-byte `{}` config blob every SOCI index points at (serve it at /blobs/ too, §1.4). */
export const SOCI_CONFIG_BLOB = { digest: EMPTY_JSON_DIGEST, bytes: EMPTY_JSON } as const;

/**
 * Build the SOCI index for one image manifest. `imageLayers` are the manifest's layers in order;
 * `ztocs` maps a layer digest to its zTOC. Throws `OciError('MANIFEST_INVALID')` when no layer has a
 * zTOC (soci's ErrEmptyIndex: such a platform gets no SOCI index).
 */
export function buildSociIndex(
  imageLayers: readonly Descriptor[],
  ztocs: ReadonlyMap<string, LayerZtoc>,
  opts: SociIndexOptions = {},
): SociIndexResult {
  const version = opts.version ?? 'v2';
  const spanSize = opts.spanSize ?? SOCI_DEFAULTS.spanSize;
  const layers: Descriptor[] = [];
  for (const layer of imageLayers) {
    const z = ztocs.get(layer.digest);
    if (!z) continue;
    const annotations: Record<string, string> = {
      [Annotation.imageLayerDigest]: layer.digest,
      [Annotation.imageLayerMediaType]: layer.mediaType,
    };
    if (opts.spanSizeAnnotation ?? true) annotations[Annotation.spanSize] = String(spanSize);
    if (opts.xattrOptimization && z.needsXattrs === false) annotations[Annotation.disableXattrs] = 'true';
    layers.push({ mediaType: MediaType.sociLayer, digest: z.digest, size: z.size, annotations });
  }
  if (layers.length === 0) throw new OciError('MANIFEST_INVALID', 'no layer of the image has a zTOC: the SOCI index would be empty');

  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: {
      mediaType: version === 'v2' ? MediaType.sociIndexV2 : MediaType.sociIndexV1,
      digest: EMPTY_JSON_DIGEST,
      size: EMPTY_JSON.length,
    },
    layers,
  };
  if (version === 'v1') {
    if (!opts.subject) throw new OciError('MANIFEST_INVALID', 'a v1 SOCI index needs the image manifest as subject');
    manifest.subject = { mediaType: opts.subject.mediaType, digest: opts.subject.digest, size: opts.subject.size };
  }
  manifest.annotations = { [Annotation.buildToolIdentifier]: opts.buildToolIdentifier ?? SOCI_DEFAULTS.buildToolIdentifier };
  const bytes = marshalManifest(manifest);
  return { bytes, digest: sha256(bytes), size: bytes.length, manifest };
}
