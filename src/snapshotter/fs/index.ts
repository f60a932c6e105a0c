/**
 * The snapshotter's filesystem side: a layer's inode tree built from its zTOC (`buildLayerTree`) and its
 * read-only FUSE mount (`mountLayer`). The only folder that may import fuse-native.
 */
export { buildLayerTree, makedev, parseModTime, nameComponents, type LayerNode, type LayerTree, type LayerTreeOptions, type NodeKind } from './layer-tree.js';
export { mountLayer, layerOps, type LayerContent, type LayerContentFile, type MountLayerOptions, type MountedLayer } from './layer-fs.js';
