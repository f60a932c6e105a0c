/**
 * The tar TOC builder: the public surface of `indexer/tar`. A streaming parser of the uncompressed tar
 * stream whose entries equal Go `archive/tar` `Reader.Next()` results, as soci's TOC builder records them
 * (soci-format.md §4.2, §7).
 */
export { TarTocBuilder, MAX_SPECIAL_FILE_SIZE, type TarToc, type TarTocBuilderOptions } from './toc-builder.js';
export { formatModTime } from './mod-time.js';
