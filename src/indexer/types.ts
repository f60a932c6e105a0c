/**
 * The data model of a zTOC (../shared/spec/soci-format.md §4), shared by every part of the indexer.
 *
 * Numbers: offsets and sizes are JS numbers and must be safe integers; a tar field that does not fit is
 * a `LayerSkipped('VALUE_OUT_OF_RANGE')`, never a silently rounded value. The codec writes int64 fields
 * as bigint.
 */

export type EntryType = 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** One tar entry exactly as Go's `archive/tar` returns it (§4.2, §7.1). */
export interface FileMetadata {
  /** `Header.Name` verbatim (after PAX path / GNU long name / USTAR prefix join, cut at the first NUL). */
  name: string;
  type: EntryType;
  /** Offset of the entry's data in the uncompressed tar stream: after all of this entry's headers. */
  uncompressedOffset: number;
  /** `Header.Size` (after a PAX `size` override). */
  uncompressedSize: number;
  linkname: string;
  /** `Header.Mode`: the raw tar mode field (may include c_IS* type bits). */
  mode: number;
  /** uint32 (Go casts Header.Uid to uint32). */
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Go `time.Time.MarshalText()` of Header.ModTime in UTC, e.g. `2023-11-14T22:13:20.25Z`. */
  modTime: string;
  devmajor: number;
  devminor: number;
  /** All PAX records of the entry (`Header.PAXRecords`), sorted by key (byte order). */
  xattrs: Array<[key: string, value: string]>;
}

/** A gzip checkpoint (§5.1): inflate state at a deflate block boundary. */
export interface Checkpoint {
  /** Compressed offset (from the start of the blob) of the first full byte after the checkpoint. */
  in: number;
  /** Uncompressed offset in the tar stream. */
  out: number;
  /** 0–7: unused bits of the byte at `in - 1`. */
  bits: number;
  /** The 32768 bytes of output before `out`, left-padded with zeros. */
  window: Uint8Array;
}

export type CompressionAlgorithm = 'gzip' | 'uncompressed';

/** A decoded or to-be-encoded zTOC. */
export interface Ztoc {
  version: string;
  buildToolIdentifier: string;
  compressedArchiveSize: number;
  uncompressedArchiveSize: number;
  toc: FileMetadata[];
  compressionAlgorithm: CompressionAlgorithm;
  maxSpanId: number;
  spanDigests: string[];
  /** The zinfo blob: the gzip v2 checkpoint blob (§5.1) or the TarZinfo flatbuffer (§5.4). */
  checkpoints: Uint8Array;
}

/** One span: its compressed byte range [start, end) in the blob and uncompressed range [outStart, outEnd). */
export interface Span {
  id: number;
  start: number;
  end: number;
  outStart: number;
  outEnd: number;
  digest: string;
}
