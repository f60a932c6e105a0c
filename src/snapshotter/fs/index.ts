/**
 * The snapshotter's filesystem side: a layer's inode tree built from its zTOC (`buildLayerTree`) and its
 * read-only FUSE mount (`mountLayer`: the native libfuse3 server when built, else fuse-native). The only
 * folder that may import fuse-native or load build/Release/soci_fuse.node.
 */
export { buildLayerTree, makedev, parseModTime, nameComponents, type LayerNode, type LayerTree, type LayerTreeOptions, type NodeKind } from './layer-tree.js';
export { mountLayer, layerOps, type LayerContent, type LayerContentFile, type MountLayerOptions, type MountedLayer } from './layer-fs.js';
export { mountNativeLayer, nativeFuseAvailable, serializeTree, type NativeMountedLayer, type NativeTable } from './native-fs.js';
export { buildNativeTable } from './native-table.js';
export { NativeTableWorker, type NativeTableTimings, type NativeTableWorkerOptions } from './native-table-worker.js';
