/**
 * The indexer's public surface: layer blob in, zTOC out (`indexLayer`, `LayerIndexer`, `IndexerPool`);
 * zTOC in, file bytes out (`ZtocReader`); the codecs; the SOCI index and SOCI-enabled image builders.
 */
export * from './types.js';
export { LayerIndexer, indexLayer, skipByMediaType, needsXattrs, type IndexLayerOptions, type IndexedLayer, type SkippedLayer, type LayerIndexResult } from './layer-indexer.js';
export { IndexerPool, type IndexerPoolOptions, type LayerIndexerService } from './pool.js';
export { ZtocReader, cleanName, type RangeSource } from './reader.js';
export { encodeZtoc, decodeZtoc, encodeTarZinfo, decodeTarZinfo } from './ztoc/index.js';
export { encodeZinfoBlob, decodeZinfoBlob, nativeEngineAvailable, type EngineName } from './gzip/index.js';
