/**
 * The tar TOC of a layer, built in one streaming pass with exactly the results of Go 1.19 `archive/tar`
 * `Reader.Next()` as soci's `ztoc/toc_builder.go` uses it (soci-format.md §4.2, §7; "Five facts" #4).
 *
 * Feed the uncompressed tar stream with `write` in chunks of any size (a header may straddle chunks; the
 * caller may reuse a chunk's buffer once `write` returns), then call `end`. File data is skipped by
 * arithmetic and never copied; memory is the TOC plus at most one PAX / GNU long-name header (capped at
 * 1 MiB like Go's `maxSpecialFileSize`).
 *
 * Go's reading rules reproduced here:
 * - `x` records apply to the next entry only, and a second `x` replaces the first; `L`/`K` set the name /
 *   link target (cut at the first NUL; an empty one changes nothing) and win over PAX `path`/`linkpath`;
 *   PAX records with an empty value change no field but stay in `xattrs`.
 * - Typeflag `'\0'` becomes `dir` when the final name ends in `/`, else `reg`; header-only types (links,
 *   devices, dirs, fifos) have no data whatever their size field says.
 * - A negative size is an error (`ErrHeader`) except on header-only types; the raw header's size is checked
 *   before the PAX `size` override too.
 * - End of archive (`Next()` returns `io.EOF`): two zero blocks; one zero block then end of stream; end of
 *   stream at a header boundary; end of stream inside an entry's padding (Go's `tryReadFull` of the padding
 *   reports a plain EOF). A zero block followed by a non-zero block, or a stream ending inside a header or
 *   file data, is corrupt. Pending `x`/`L`/`K` headers at the end are dropped, as Go drops them.
 * - `uncompressedArchiveSize` is the stream position at that EOF; bytes after two zero blocks are ignored.
 *
 * Results Go would accept but a zTOC cannot carry are `LayerSkipped`: PAX global headers, sparse entries
 * (`S`, or any `GNU.sparse.*` record — stricter than Go, which ignores unknown sparse versions), other
 * typeflags, sizes/modes/device numbers that are not safe integers, negative sizes on header-only types
 * (they would break the reader's header-offset chain), non-UTF-8 strings.
 */
import { CorruptLayer, LayerSkipped } from '../../oci/errors.js';
import type { EntryType, FileMetadata } from '../types.js';
import {
  BLOCK_SIZE, TYPE_DIR, TYPE_GNU_LONGLINK, TYPE_GNU_LONGNAME, TYPE_GNU_SPARSE, TYPE_PAX, TYPE_PAX_GLOBAL,
  TYPE_REG, TYPE_REGA, blockPadding, isHeaderOnlyType, isZeroBlock, parseHeader, type Int64, type TarHeader,
} from './header.js';
import { formatModTime } from './mod-time.js';
import { parseDecimalInt64, parsePaxRecords, parsePaxTime, type PaxRecords } from './pax.js';
import { binaryString, compareBytes, cutAtNul, decodeUtf8 } from './text.js';

/** Go's `maxSpecialFileSize`: the largest PAX header or GNU long name/link data accepted. */
export const MAX_SPECIAL_FILE_SIZE = 1 << 20;

const ENTRY_TYPES: Record<number, EntryType> = {
  0x30: 'reg', 0x31: 'hardlink', 0x32: 'symlink', 0x33: 'char', 0x34: 'block', 0x35: 'dir', 0x36: 'fifo',
};

export interface TarTocBuilderOptions {
  /**
   * Called once, inside `write`, the moment the end-of-archive blocks have been read (Go's `Next()` would
   * return `io.EOF` there), with the archive size. Not called when the end is only known at `end()`
   * (a stream without end blocks, or with one zero block).
   */
  onEnd?: (archiveSize: number) => void;
}

export interface TarToc {
  entries: FileMetadata[];
  uncompressedArchiveSize: number;
}

export class TarTocBuilder {
  readonly #onEnd: ((archiveSize: number) => void) | undefined;
  readonly #entries: FileMetadata[] = [];
  /** Stream bytes consumed so far. */
  #pos = 0;
  /** File data bytes still to skip, then padding bytes. */
  #skip = 0;
  #pad = 0;
  /** A header block being assembled across chunks. */
  readonly #blk = new Uint8Array(BLOCK_SIZE);
  #blkFill = 0;
  /** One zero block seen: the next block decides between end of archive and corruption. */
  #sawZero = false;
  /** Data of an `x`/`L`/`K` header being collected. */
  #special: Uint8Array | undefined;
  #specialFill = 0;
  #specialType = 0;
  #specialAt = 0;
  /** Meta headers pending for the next entry. */
  #pax: PaxRecords | undefined;
  #longName: Uint8Array | undefined;
  #longLink: Uint8Array | undefined;
  #archiveSize: number | undefined;
  #error: unknown;

  constructor(opts: TarTocBuilderOptions = {}) {
    this.#onEnd = opts.onEnd;
  }

  /** True once the end of the archive is known (end-of-archive blocks read, or `end()` called successfully). */
  get ended(): boolean {
    return this.#archiveSize !== undefined;
  }

  /** The uncompressed archive size once `ended`. */
  get archiveSize(): number | undefined {
    return this.#archiveSize;
  }

  /** Feed the next bytes of the tar stream. Throws `CorruptLayer` or `LayerSkipped`; errors are sticky. */
  write(chunk: Uint8Array): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#archiveSize !== undefined) return;
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#error = err;
      throw err;
    }
  }

  /** The stream is over: the TOC, or `CorruptLayer` when it stopped inside a header or file data. */
  end(): TarToc {
    if (this.#error !== undefined) throw this.#error;
    if (this.#archiveSize === undefined) {
      let problem: string | undefined;
      if (this.#skip > 0) problem = 'tar stream ends inside file data';
      else if (this.#special !== undefined) problem = 'tar stream ends inside a PAX or GNU long-name header';
      else if (this.#blkFill > 0) problem = 'tar stream ends inside a header block';
      if (problem !== undefined) {
        this.#error = new CorruptLayer(problem, this.#pos, 'uncompressed');
        throw this.#error;
      }
      this.#archiveSize = this.#pos; // at a header boundary, after one zero block, or inside padding
    }
    return { entries: this.#entries, uncompressedArchiveSize: this.#archiveSize };
  }

  #consume(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.#skip > 0 || this.#pad > 0) {
        const data = this.#skip > 0;
        const k = Math.min(data ? this.#skip : this.#pad, n - i);
        if (data) this.#skip -= k;
        else this.#pad -= k;
        i += k;
        this.#pos += k;
        continue;
      }
      const special = this.#special;
      if (special !== undefined) {
        const k = Math.min(special.length - this.#specialFill, n - i);
        special.set(chunk.subarray(i, i + k), this.#specialFill);
        this.#specialFill += k;
        i += k;
        this.#pos += k;
        if (this.#specialFill === special.length) this.#finishSpecial();
        continue;
      }
      if (this.#blkFill === 0 && n - i >= BLOCK_SIZE) {
        this.#pos += BLOCK_SIZE;
        this.#onBlock(chunk.subarray(i, i + BLOCK_SIZE));
        i += BLOCK_SIZE;
      } else {
        const k = Math.min(BLOCK_SIZE - this.#blkFill, n - i);
        this.#blk.set(chunk.subarray(i, i + k), this.#blkFill);
        this.#blkFill += k;
        i += k;
        this.#pos += k;
        if (this.#blkFill < BLOCK_SIZE) continue;
        this.#blkFill = 0;
        this.#onBlock(this.#blk);
      }
      if (this.#archiveSize !== undefined) return;
    }
  }

  /** A whole block at a header position; `this.#pos` is just past it. */
  #onBlock(b: Uint8Array): void {
    const at = this.#pos - BLOCK_SIZE;
    if (this.#sawZero) {
      if (!isZeroBlock(b)) throw new CorruptLayer('tar zero block followed by a non-zero block', at, 'uncompressed');
      this.#archiveSize = this.#pos;
      this.#onEnd?.(this.#pos);
      return;
    }
    if (isZeroBlock(b)) {
      this.#sawZero = true;
      return;
    }
    const h = parseHeader(b, at);
    // Go's first handleRegularFile, on the raw header.
    if (!isHeaderOnlyType(h.typeflag) && isNegative(h.size)) throw new CorruptLayer('tar header has a negative size', at, 'uncompressed');
    switch (h.typeflag) {
      case TYPE_PAX_GLOBAL: // Go parses its records (bad ones are ErrHeader) and returns it as an entry
      case TYPE_PAX:
      case TYPE_GNU_LONGNAME:
      case TYPE_GNU_LONGLINK:
        this.#startSpecial(h, at);
        return;
      default:
        this.#emit(h, at);
    }
  }

  #startSpecial(h: TarHeader, at: number): void {
    if (typeof h.size !== 'number' || h.size > MAX_SPECIAL_FILE_SIZE) {
      throw new CorruptLayer(`tar PAX/GNU long-name header data larger than ${MAX_SPECIAL_FILE_SIZE} bytes`, at, 'uncompressed');
    }
    this.#special = new Uint8Array(h.size);
    this.#specialFill = 0;
    this.#specialType = h.typeflag;
    this.#specialAt = at;
    if (h.size === 0) this.#finishSpecial();
  }

  #finishSpecial(): void {
    const data = this.#special as Uint8Array;
    this.#special = undefined;
    if (this.#specialType === TYPE_PAX || this.#specialType === TYPE_PAX_GLOBAL) {
      const records = parsePaxRecords(data);
      if (records === undefined) throw new CorruptLayer('malformed PAX extended header record', this.#specialAt, 'uncompressed');
      if (this.#specialType === TYPE_PAX_GLOBAL) {
        throw new LayerSkipped('PAX_GLOBAL_HEADER', `tar PAX global header at uncompressed offset ${this.#specialAt}`);
      }
      this.#pax = records;
    } else {
      const s = cutAtNul(data);
      if (this.#specialType === TYPE_GNU_LONGNAME) this.#longName = s.length > 0 ? s : undefined;
      else this.#longLink = s.length > 0 ? s : undefined;
    }
    this.#pad = blockPadding(data.length);
  }

  /** A real entry: merge pending meta headers, check, record it, and arrange to skip its data. */
  #emit(h: TarHeader, at: number): void {
    const offset = this.#pos;
    let { name, linkname, uname, gname, size, uid, gid } = h;
    let mtime: Int64 = h.mtime;
    let nsec = 0;
    const pax = this.#pax;
    this.#pax = undefined;
    const corrupt = (what: string): CorruptLayer => new CorruptLayer(`bad PAX ${what} record`, at, 'uncompressed');
    if (pax !== undefined) {
      for (const [key, rec] of pax) {
        if (rec.value.length === 0) continue; // keeps the header's value
        switch (key) {
          case 'path': name = rec.value; break;
          case 'linkpath': linkname = rec.value; break;
          case 'uname': uname = rec.value; break;
          case 'gname': gname = rec.value; break;
          case 'uid':
          case 'gid':
          case 'size': {
            const v = parseDecimalInt64(binaryString(rec.value));
            if (v === undefined) throw corrupt(key);
            const n = toInt64(v);
            if (key === 'uid') uid = n;
            else if (key === 'gid') gid = n;
            else size = n;
            break;
          }
          case 'mtime':
          case 'atime':
          case 'ctime': {
            const t = parsePaxTime(binaryString(rec.value));
            if (t === undefined) throw corrupt(key);
            if (key === 'mtime') {
              mtime = t.sec;
              nsec = t.nsec;
            }
            break;
          }
        }
      }
    }
    if (this.#longName !== undefined) name = this.#longName;
    if (this.#longLink !== undefined) linkname = this.#longLink;
    this.#longName = undefined;
    this.#longLink = undefined;
    let typeflag = h.typeflag;
    if (typeflag === TYPE_REGA) typeflag = name.length > 0 && name[name.length - 1] === 0x2f ? TYPE_DIR : TYPE_REG;
    const headerOnly = isHeaderOnlyType(typeflag);
    if (!headerOnly && isNegative(size)) throw new CorruptLayer('tar entry has a negative size', at, 'uncompressed');
    if (typeflag === TYPE_GNU_SPARSE) throw new LayerSkipped('SPARSE_ENTRY', `old GNU sparse tar entry at uncompressed offset ${at}`);
    if (pax !== undefined) {
      for (const key of pax.keys()) {
        if (key.startsWith('GNU.sparse.')) throw new LayerSkipped('SPARSE_ENTRY', `PAX GNU sparse tar entry at uncompressed offset ${at}`);
      }
    }
    const type = ENTRY_TYPES[typeflag];
    if (type === undefined) {
      throw new LayerSkipped('UNSUPPORTED_TYPEFLAG', `tar typeflag ${JSON.stringify(String.fromCharCode(typeflag))} at uncompressed offset ${at}`);
    }
    if (typeof size !== 'number' || size < 0) throw outOfRange('size', size, at);
    if (typeof h.mode !== 'number') throw outOfRange('mode', h.mode, at);
    if (typeof h.devmajor !== 'number') throw outOfRange('devmajor', h.devmajor, at);
    if (typeof h.devminor !== 'number') throw outOfRange('devminor', h.devminor, at);

    let xattrs: Array<[string, string]> = [];
    if (pax !== undefined && pax.size > 0) {
      const recs = [...pax.values()].sort((a, b) => compareBytes(a.key, b.key));
      xattrs = recs.map((r) => [decodeUtf8(r.key, 'PAX record key'), decodeUtf8(r.value, 'PAX record value')]);
    }
    this.#entries.push({
      name: decodeUtf8(name, 'name'),
      type,
      uncompressedOffset: offset,
      uncompressedSize: size,
      linkname: decodeUtf8(linkname, 'link name'),
      mode: h.mode,
      uid: toUint32(uid),
      gid: toUint32(gid),
      uname: decodeUtf8(uname, 'user name'),
      gname: decodeUtf8(gname, 'group name'),
      modTime: formatModTime(mtime, nsec),
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs,
    });
    const nb = headerOnly ? 0 : size;
    this.#skip = nb;
    this.#pad = blockPadding(nb);
  }
}

function isNegative(v: Int64): boolean {
  return typeof v === 'number' ? v < 0 : v < 0n;
}

function toInt64(v: bigint): Int64 {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

/** Go `uint32(int(v))`. */
function toUint32(v: Int64): number {
  return typeof v === 'number' ? v >>> 0 : Number(BigInt.asUintN(32, v));
}

function outOfRange(field: string, v: Int64, at: number): LayerSkipped {
  return new LayerSkipped('VALUE_OUT_OF_RANGE', `tar ${field} ${String(v)} at uncompressed offset ${at} cannot be carried exactly in a zTOC`);
}
