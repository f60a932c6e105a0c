/**
 * zTOC codec (soci-format.md §4–§5.4): the zTOC flatbuffer, byte-identical to soci's Go marshaler, and
 * the TarZinfo flatbuffer of uncompressed layers, with a bounds-checked validating decoder for both.
 */
export { encodeZtoc, decodeZtoc, tarHeaderOffsets, alignToTarBlock, type DecodeZtocOptions } from './codec.js';
export { encodeTarZinfo, decodeTarZinfo, tarMaxSpanId, tarSpanRange, TAR_ZINFO_VERSION, type TarZinfo } from './tar-zinfo.js';
export { ZtocFormatError } from './fb-reader.js';
