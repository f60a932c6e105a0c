/**
 * Public surface of the gzip checkpoint engine (soci-format.md §5, §6): the streaming checkpointer
 * that builds a layer's zinfo and span digests, the v2 checkpoint blob codec, span geometry and
 * span restore, and engine selection (native N-API addon or pako).
 */
export { GzipCheckpointer, type GzipCheckpointerOptions, type GzipZinfoResult } from './checkpointer.js';
export { encodeZinfoBlob, decodeZinfoBlob, zinfoBlobSize, type ZinfoBlob } from './zinfo-blob.js';
export { inflateSpan, inflateSpanInto, spansFromCheckpoints, spanCompressedStart } from './span.js';
export { selectGzipEngine, nativeEngineAvailable } from './select-engine.js';
export { nativeSpanInflaters } from './native-engine.js';
export { WINDOW_SIZE, type EngineName, type EngineChoice, type GzipEngine, type BlockInflater } from './engine.js';
export { SpanDigester, mergeSpanDigests } from './span-digester.js';
