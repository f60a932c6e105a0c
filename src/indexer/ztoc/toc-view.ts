/**
 * The TOC of a zTOC read in place, for consumers that walk every entry once (the snapshotter builds a
 * layer's inode tree from it) and do not keep `FileMetadata` objects: `scanToc` checks every entry as
 * `decodeZtoc` does (bounds of every table, vtable, string and vector; a known entry type; int64 fields
 * safe integers, offset and size non-negative; at most `maxXattrs` PAX records; entries sorted by offset,
 * stably, then the tar-header-offset chain of soci-format.md §4.2), without decoding a string; `TocView`
 * then visits the entries in that order through one reused `TocEntryView` whose string fields are decoded
 * as they are read (the entry type is interned; `uname`, `gname` and PAX records only on demand).
 * On a large layer (67k entries) this is several times cheaper than decoding the TOC into objects, most
 * of which a tree build throws away. Same rules, same error class (`ZtocFormatError`, `ZTOC_INVALID`).
 */
import type { EntryType, FileMetadata } from '../types.js';
import { ZtocFormatError } from './fb-reader.js';

const TYPES: readonly EntryType[] = ['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const utf8 = new TextDecoder('utf-8');
const NO_RECORDS: Array<[string, string]> = [];
Object.freeze(NO_RECORDS);

/** Field ids of `ztoc.FileMetadata`. */
const F = { name: 0, type: 1, offset: 2, size: 3, linkname: 4, mode: 5, uid: 6, gid: 7, uname: 8, gname: 9, modTime: 10, devmajor: 11, devminor: 12, xattrs: 13 } as const;

export interface TocScanOptions {
  maxEntries?: number;
  maxXattrs?: number;
}

/** Bounds-checked reads over the zTOC bytes; every failure names the entry. */
class Bytes {
  readonly b: Uint8Array;
  readonly v: DataView;
  readonly latin1: Buffer;
  readonly n: number;
  constructor(b: Uint8Array) {
    this.b = b;
    this.n = b.length;
    this.v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.latin1 = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }
  check(pos: number, len: number, what: string): void {
    if (pos < 0 || len < 0 || pos + len > this.n) throw new ZtocFormatError(`${what}: bytes [${pos}, ${pos + len}) outside the ${this.n}-byte buffer`);
  }
  u32(p: number, what: string): number {
    this.check(p, 4, what);
    return this.v.getUint32(p, true);
  }
  /** Start of the vtable of the table at `pos`, after checking it; its size is at that position. */
  vtable(pos: number, what: string): number {
    this.check(pos, 4, what);
    const vt = pos - this.v.getInt32(pos, true);
    this.check(vt, 2, what);
    const size = this.v.getUint16(vt, true);
    if (size < 4 || size % 2 !== 0) throw new ZtocFormatError(`${what}: bad vtable size ${size}`);
    this.check(vt, size, what);
    return vt;
  }
  /** Absolute position of field `id` of the table at `pos` (vtable `vt`), or -1 when absent. */
  field(pos: number, vt: number, id: number): number {
    const slot = 4 + 2 * id;
    if (slot + 2 > this.v.getUint16(vt, true)) return -1;
    const off = this.v.getUint16(vt + slot, true);
    return off === 0 ? -1 : pos + off;
  }
  /** Position of the length prefix of the string in field `id` (after checking its bytes), or -1. */
  str(pos: number, vt: number, id: number, what: string): number {
    const p = this.field(pos, vt, id);
    if (p < 0) return -1;
    const s = p + this.u32(p, what);
    this.check(s + 4, this.u32(s, what), what);
    return s;
  }
  decode(s: number): string {
    if (s < 0) return '';
    const from = s + 4;
    const to = from + this.v.getUint32(s, true);
    const b = this.b;
    for (let i = from; i < to; i++) if ((b[i] as number) > 0x7f) return utf8.decode(b.subarray(from, to));
    return this.latin1.toString('latin1', from, to);
  }
  int64(pos: number, vt: number, id: number, what: string, nonNegative: boolean): number {
    const p = this.field(pos, vt, id);
    if (p < 0) return 0;
    this.check(p, 8, what);
    const n = this.v.getInt32(p + 4, true) * 4294967296 + this.v.getUint32(p, true);
    if (!Number.isSafeInteger(n) || (nonNegative && n < 0)) throw new ZtocFormatError(`${what} ${this.v.getBigInt64(p, true)} is out of range`);
    return n;
  }
  uint32(pos: number, vt: number, id: number, what: string): number {
    const p = this.field(pos, vt, id);
    return p < 0 ? 0 : this.u32(p, what);
  }
}

/** The entry type at string position `s`, interned; undefined when it is not one of the seven. */
function entryType(bytes: Bytes, s: number): EntryType | undefined {
  if (s < 0) return undefined;
  const n = bytes.v.getUint32(s, true);
  for (const t of TYPES) {
    if (t.length !== n) continue;
    let same = true;
    for (let i = 0; i < n && same; i++) same = bytes.b[s + 4 + i] === t.charCodeAt(i);
    if (same) return t;
  }
  return undefined;
}

/** One entry of a `TocView`; valid only until the visit moves on (copy what you keep). */
export class TocEntryView implements FileMetadata {
  name = '';
  type: EntryType = 'reg';
  uncompressedOffset = 0;
  uncompressedSize = 0;
  linkname = '';
  mode = 0;
  uid = 0;
  gid = 0;
  modTime = '';
  devmajor = 0;
  devminor = 0;
  #bytes: Bytes;
  #pos = 0;
  #vt = 0;

  constructor(bytes: Bytes) {
    this.#bytes = bytes;
  }

  /** Loads the entry at table `pos` (already checked by `scanToc`). */
  load(pos: number, vt: number, offset: number, size: number, type: EntryType): void {
    const b = this.#bytes;
    this.#pos = pos;
    this.#vt = vt;
    this.type = type;
    this.uncompressedOffset = offset;
    this.uncompressedSize = size;
    this.name = b.decode(b.str(pos, vt, F.name, 'toc'));
    this.linkname = b.decode(b.str(pos, vt, F.linkname, 'toc'));
    this.modTime = b.decode(b.str(pos, vt, F.modTime, 'toc'));
    this.mode = b.int64(pos, vt, F.mode, 'toc.mode', false);
    this.uid = b.uint32(pos, vt, F.uid, 'toc.uid');
    this.gid = b.uint32(pos, vt, F.gid, 'toc.gid');
    this.devmajor = b.int64(pos, vt, F.devmajor, 'toc.devmajor', false);
    this.devminor = b.int64(pos, vt, F.devminor, 'toc.devminor', false);
  }

  get uname(): string {
    return this.#bytes.decode(this.#bytes.str(this.#pos, this.#vt, F.uname, 'toc'));
  }

  get gname(): string {
    return this.#bytes.decode(this.#bytes.str(this.#pos, this.#vt, F.gname, 'toc'));
  }

  /** Every PAX record (a new array each time). */
  get xattrs(): Array<[string, string]> {
    return this.recordsWithPrefix('');
  }

  /** The PAX records whose key starts with `prefix` (ASCII), decoding only those. */
  recordsWithPrefix(prefix: string): Array<[string, string]> {
    return records(this.#bytes, this.#pos, this.#vt, prefix);
  }
}

/** The PAX records of the entry table at `pos` (vtable `vt`, checked) whose key starts with `prefix`. */
function records(b: Bytes, pos: number, vt: number, prefix: string): Array<[string, string]> {
  const p = b.field(pos, vt, F.xattrs);
  if (p < 0) return NO_RECORDS;
  const v = p + b.v.getUint32(p, true);
  const n = b.v.getUint32(v, true);
  let out: Array<[string, string]> | undefined;
  for (let i = 0; i < n; i++) {
    const t = v + 4 + 4 * i + b.v.getUint32(v + 4 + 4 * i, true);
    const tvt = t - b.v.getInt32(t, true);
    const k = b.str(t, tvt, 0, 'toc.xattrs');
    const kn = k < 0 ? 0 : b.v.getUint32(k, true);
    if (kn < prefix.length) continue;
    let match = true;
    for (let j = 0; j < prefix.length && match; j++) match = b.b[k + 4 + j] === prefix.charCodeAt(j);
    if (!match) continue;
    (out ??= []).push([b.decode(k), b.decode(b.str(t, tvt, 1, 'toc.xattrs'))]);
  }
  return out ?? NO_RECORDS;
}

/**
 * A cursor over a `TocView` for one-pass consumers that read names as bytes (the snapshotter's native
 * table build): `load(k)` reads entry k (offset order) without decoding a string; `name`, `linkname` and
 * `modTime` are positions of the strings' u32 length prefixes in `bytes` (the text follows; -1 when
 * absent), already bounds-checked by `scanToc`. Valid until the next `load`.
 */
export class TocCursor {
  readonly bytes: Uint8Array;
  readonly length: number;
  type: EntryType = 'reg';
  uncompressedOffset = 0;
  uncompressedSize = 0;
  mode = 0;
  uid = 0;
  gid = 0;
  devmajor = 0;
  devminor = 0;
  name = -1;
  linkname = -1;
  modTime = -1;
  #b: Bytes;
  #load: (k: number) => void;
  #pos = 0;
  #vt = 0;

  constructor(b: Bytes, length: number, at: (k: number) => { pos: number; vt: number; offset: number; size: number; type: EntryType }) {
    this.#b = b;
    this.bytes = b.b;
    this.length = length;
    this.#load = (k) => {
      const e = at(k);
      this.#pos = e.pos;
      this.#vt = e.vt;
      this.type = e.type;
      this.uncompressedOffset = e.offset;
      this.uncompressedSize = e.size;
    };
  }

  load(k: number): void {
    this.#load(k);
    const b = this.#b;
    const pos = this.#pos;
    const vt = this.#vt;
    this.name = b.str(pos, vt, F.name, 'toc');
    this.linkname = b.str(pos, vt, F.linkname, 'toc');
    this.modTime = b.str(pos, vt, F.modTime, 'toc');
    this.mode = b.int64(pos, vt, F.mode, 'toc.mode', false);
    this.uid = b.uint32(pos, vt, F.uid, 'toc.uid');
    this.gid = b.uint32(pos, vt, F.gid, 'toc.gid');
    this.devmajor = b.int64(pos, vt, F.devmajor, 'toc.devmajor', false);
    this.devminor = b.int64(pos, vt, F.devminor, 'toc.devminor', false);
  }

  /** The string at position `s` (from `name`, `linkname`, `modTime`) as `TocEntryView` decodes it; '' for -1. */
  text(s: number): string {
    return this.#b.decode(s);
  }

  /** The current entry's PAX records whose key starts with `prefix` (ASCII), decoding only those. */
  recordsWithPrefix(prefix: string): Array<[string, string]> {
    return records(this.#b, this.#pos, this.#vt, prefix);
  }
}

/** A checked TOC, visited in offset order without per-entry objects. */
export class TocView {
  readonly length: number;
  readonly #bytes: Bytes;
  readonly #pos: Uint32Array;
  readonly #vt: Uint32Array;
  readonly #offset: Float64Array;
  readonly #size: Float64Array;
  readonly #type: EntryType[];
  readonly #order: Uint32Array | undefined;

  constructor(bytes: Bytes, pos: Uint32Array, vt: Uint32Array, offset: Float64Array, size: Float64Array, type: EntryType[], order: Uint32Array | undefined) {
    this.#bytes = bytes;
    this.length = pos.length;
    this.#pos = pos;
    this.#vt = vt;
    this.#offset = offset;
    this.#size = size;
    this.#type = type;
    this.#order = order;
  }

  /** A cursor over the same entries in the same order that decodes no string (see `TocCursor`). */
  cursor(): TocCursor {
    const at = { pos: 0, vt: 0, offset: 0, size: 0, type: 'reg' as EntryType };
    return new TocCursor(this.#bytes, this.length, (k) => {
      const i = this.#order === undefined ? k : (this.#order[k] as number);
      at.pos = this.#pos[i] as number;
      at.vt = this.#vt[i] as number;
      at.offset = this.#offset[i] as number;
      at.size = this.#size[i] as number;
      at.type = this.#type[i] as EntryType;
      return at;
    });
  }

  /** The entries sorted by offset (as `decodeZtoc` returns them), all through one reused view. */
  *[Symbol.iterator](): Generator<TocEntryView> {
    const e = new TocEntryView(this.#bytes);
    for (let k = 0; k < this.length; k++) {
      const i = this.#order === undefined ? k : (this.#order[k] as number);
      e.load(this.#pos[i] as number, this.#vt[i] as number, this.#offset[i] as number, this.#size[i] as number, this.#type[i] as EntryType);
      yield e;
    }
  }
}

/**
 * Checks the TOC of the zTOC in `bytes` (`vector` is the position of its `metadata` vector) entry by
 * entry with `decodeZtoc`'s rules and returns a view of it.
 */
export function scanToc(data: Uint8Array, vector: number, opts: TocScanOptions = {}): TocView {
  const b = new Bytes(data);
  const count = b.u32(vector, 'toc length');
  if (count > (opts.maxEntries ?? 4_000_000)) throw new ZtocFormatError(`toc: ${count} elements, more than ${opts.maxEntries ?? 4_000_000}`);
  b.check(vector + 4, count * 4, 'toc');
  const maxXattrs = opts.maxXattrs ?? 10000;
  const pos = new Uint32Array(count);
  const vts = new Uint32Array(count);
  const offset = new Float64Array(count);
  const size = new Float64Array(count);
  const types = new Array<EntryType>(count);
  let sorted = true;
  for (let i = 0; i < count; i++) {
    const what = `toc[${i}]`;
    const at = vector + 4 + 4 * i;
    const p = at + b.v.getUint32(at, true);
    const vt = b.vtable(p, what);
    const type = entryType(b, b.str(p, vt, F.type, what));
    if (type === undefined) throw new ZtocFormatError(`${what}: unknown entry type ${JSON.stringify(b.decode(b.str(p, vt, F.type, what)))}`);
    for (const id of [F.name, F.linkname, F.uname, F.gname, F.modTime]) b.str(p, vt, id, what);
    b.uint32(p, vt, F.uid, what);
    b.uint32(p, vt, F.gid, what);
    b.int64(p, vt, F.mode, `${what}.mode`, false);
    b.int64(p, vt, F.devmajor, `${what}.devmajor`, false);
    b.int64(p, vt, F.devminor, `${what}.devminor`, false);
    const xp = b.field(p, vt, F.xattrs);
    if (xp >= 0) {
      const xv = xp + b.u32(xp, `${what}.xattrs`);
      const n = b.u32(xv, `${what}.xattrs length`);
      if (n > maxXattrs) throw new ZtocFormatError(`${what}.xattrs: ${n} elements, more than ${maxXattrs}`);
      b.check(xv + 4, n * 4, `${what}.xattrs`);
      for (let j = 0; j < n; j++) {
        const xa = xv + 4 + 4 * j;
        const t = xa + b.v.getUint32(xa, true);
        const xvt = b.vtable(t, `${what}.xattrs[${j}]`);
        b.str(t, xvt, 0, `${what}.xattrs[${j}]`);
        b.str(t, xvt, 1, `${what}.xattrs[${j}]`);
      }
    }
    pos[i] = p;
    vts[i] = vt;
    types[i] = type;
    offset[i] = b.int64(p, vt, F.offset, `${what}.uncompressed_offset`, true);
    size[i] = b.int64(p, vt, F.size, `${what}.uncompressed_size`, true);
    if (i > 0 && (offset[i] as number) < (offset[i - 1] as number)) sorted = false;
  }
  // A stable sort by offset, as decodeZtoc's Array#sort; then the tar-header-offset chain (§4.2).
  const order = sorted ? undefined : Uint32Array.from(Array.from({ length: count }, (_, i) => i).sort((x, y) => (offset[x] as number) - (offset[y] as number) || x - y));
  let next = 0;
  for (let k = 0; k < count; k++) {
    const i = order === undefined ? k : (order[k] as number);
    const o = offset[i] as number;
    if (next > o) {
      throw new ZtocFormatError(`toc[${k}] ${JSON.stringify(b.decode(b.str(pos[i] as number, vts[i] as number, F.name, 'toc')))}: data offset ${o} precedes its header offset ${next}`);
    }
    next = Math.ceil((o + (size[i] as number)) / 512) * 512;
  }
  return new TocView(b, pos, vts, offset, size, types, order);
}

/** Position of the zTOC's `toc.metadata` vector, or -1 when the zTOC has no toc table or no entries field. */
export function tocVectorPosition(data: Uint8Array): number {
  const b = new Bytes(data);
  const root = b.u32(0, 'Ztoc');
  const rvt = b.vtable(root, 'Ztoc');
  const tf = b.field(root, rvt, 4);
  if (tf < 0) return -1;
  const toc = tf + b.u32(tf, 'toc');
  const tvt = b.vtable(toc, 'toc');
  const mf = b.field(toc, tvt, 0);
  return mf < 0 ? -1 : mf + b.u32(mf, 'toc');
}
