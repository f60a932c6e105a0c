/**
 * The snapshotter core's public surface: the `LayerProvider` contract and its implementation
 * (`SociLayerProvider`), image resolution, the registry client, whole-rootfs mounting, events.
 */
export type { LayerProvider, LayerRef, MountedLayer } from './types.js';
export { SociLayerProvider, type SociLayerProviderOptions } from './layer-provider.js';
export { ImageResolver, pickPlatform, type ResolvedImage, type ImageResolverOptions } from './image-resolver.js';
export { RegistryClient, parseImageRef, formatImageRef, type ImageRef, type RegistryClientOptions, type FetchedManifest } from './registry-client.js';
export { LazyLayer, type LazyLayerOptions } from './lazy-layer.js';
export { mountRootfs, exec, type RootfsMount, type MountRootfsOptions } from './rootfs.js';
export { unpackLayer } from './unpack.js';
export { SnapshotterMetrics, SNAPSHOTTER_CHANNEL, emptyStats, type SnapshotterEvent, type SnapshotterStats, type FetchKind } from './metrics.js';
