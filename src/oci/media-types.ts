/**
 * Media types, annotation keys and constants of OCI, Docker distribution and SOCI.
 * Values are exact strings from image-spec v1.1.1 and soci-snapshotter (../shared/spec/soci-format.md §1.1).
 */

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociNondistTar: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociNondistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  sociIndexV1: 'application/vnd.amazon.soci.index.v1+json',
  sociIndexV2: 'application/vnd.amazon.soci.index.v2+json',
  sociLayer: 'application/octet-stream',
  sociPrefetch: 'application/vnd.amazon.soci.prefetch.v1+json',
} as const;

export const Annotation = {
  imageLayerMediaType: 'com.amazon.soci.image-layer-mediaType',
  imageLayerDigest: 'com.amazon.soci.image-layer-digest',
  spanSize: 'com.amazon.soci.span-size',
  buildToolIdentifier: 'com.amazon.soci.build-tool-identifier',
  disableXattrs: 'com.amazon.soci.disable-xattrs',
  imageManifestDigest: 'com.amazon.soci.image-manifest-digest',
  sociIndexDigest: 'com.amazon.soci.index-digest',
} as const;

/** The 2-byte `{}` config of every SOCI index. */
export const EMPTY_JSON = new Uint8Array([0x7b, 0x7d]);
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export const SOCI_DEFAULTS = {
  spanSize: 4 * 1024 * 1024,
  minLayerSize: 10 * 1024 * 1024,
  buildToolIdentifier: 'AWS SOCI CLI v0.2',
  ztocVersion: '0.9',
} as const;

export const MANIFEST_TYPES: readonly string[] = [MediaType.ociManifest, MediaType.dockerManifest];
export const INDEX_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.dockerManifestList];

export function isIndexType(mediaType: string): boolean {
  return INDEX_TYPES.includes(mediaType);
}

export function isManifestType(mediaType: string): boolean {
  return MANIFEST_TYPES.includes(mediaType);
}

/** How a layer's bytes are compressed, judged from its media type alone. */
export type LayerCompression = 'gzip' | 'uncompressed' | 'zstd' | 'unknown';

export function layerCompression(mediaType: string): LayerCompression {
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip')) return 'gzip';
  if (mediaType.endsWith('+zstd') || mediaType.endsWith('.tar.zstd')) return 'zstd';
  if (mediaType.endsWith('.tar') || mediaType === MediaType.dockerLayerTar) return 'uncompressed';
  return 'unknown';
}
