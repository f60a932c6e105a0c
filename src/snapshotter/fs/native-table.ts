/**
 * The native FUSE server's table built straight from a checked TOC read in place (`TocView`), in one
 * pass over its entries with no `LayerNode` objects and no per-entry strings: nodes live in typed arrays
 * indexed by inode number, directory entries in a slot list per directory with one open-addressing hash
 * over (parent, name bytes), and names are byte ranges of the zTOC itself, copied once into the string
 * heap. It applies layer-tree.ts's rules step for step (same inode numbering, same child order, same
 * unlinks, hard links, whiteouts, opaque markers, rejections and `CorruptLayer`), so that its output is
 * byte for byte `serializeTree(buildLayerTree(entries))`, which stays the oracle (the tests compare the
 * two) and the fuse-native fallback's tree. Strings are compared as bytes where the tree compares decoded
 * text; the two agree for valid UTF-8 without a leading BOM, and for any other name or link target this
 * returns `undefined` so that the caller takes the tree path.
 */
import { CorruptLayer } from '../../oci/errors.js';
import type { TocCursor, TocView } from '../../indexer/ztoc/toc-view.js';
import {
  makedev, parseModTime, PERM_MASK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, TYPE_BITS, XATTR_PREFIX, xattrsOf, type LayerTreeOptions, type NodeKind,
} from './layer-tree.js';
import type { NativeTable } from './native-fs.js';

const SLASH = 0x2f;
const DOT = 0x2e;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A copy of `a` with room for `cap` elements, of the same element type. */
function grown<T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: T, cap: number): T {
  const next = new (a.constructor as new (n: number) => T)(cap);
  next.set(a);
  return next;
}

/** True when bytes [from, to) decode to the same bytes through `TextDecoder` (valid UTF-8, no leading BOM). */
function plainText(b: Uint8Array, from: number, to: number): boolean {
  let high = false;
  for (let i = from; i < to && !high; i++) high = (b[i] as number) > 0x7f;
  if (!high) return true;
  if (to - from >= 3 && b[from] === 0xef && b[from + 1] === 0xbb && b[from + 2] === 0xbf) return false;
  try {
    strictUtf8.decode(b.subarray(from, to));
    return true;
  } catch {
    return false;
  }
}

/**
 * The table of the TOC in `view`, equal to `serializeTree(buildLayerTree(view, opts))`; `undefined` when
 * a name or link target is not plain UTF-8 (use the tree then). Throws `CorruptLayer` where the tree does.
 */
export function buildNativeTable(view: TocView, opts: LayerTreeOptions = {}): NativeTable | undefined {
  return new TableBuilder(view.cursor(), opts).build();
}

class TableBuilder {
  readonly #c: TocCursor;
  readonly #b: Uint8Array;
  readonly #opaqueXattrs: readonly string[];
  // Nodes, by inode number (0 unused).
  #n = 1;
  #mode = new Uint32Array(0);
  #uid = new Uint32Array(0);
  #gid = new Uint32Array(0);
  #nlink = new Int32Array(0);
  #rdev = new Uint32Array(0);
  #nsec = new Uint32Array(0);
  #size = new Float64Array(0);
  #offset = new Float64Array(0);
  #mtime = new Float64Array(0);
  /** Symlinks: position of the target's length prefix in the zTOC (-1: none, an empty target). */
  #link = new Int32Array(0);
  /** 1 alive (in the tree's `byIno`), 0 unlinked. */
  #state = new Uint8Array(0);
  /** 1 for a char device synthesized from `.wh.NAME`. */
  #whiteout = new Uint8Array(0);
  #opaque = new Uint8Array(0);
  /** Directories: first and last child slot, child count. */
  #first = new Int32Array(0);
  #last = new Int32Array(0);
  #count = new Uint32Array(0);
  #xattrs = new Map<number, Map<string, Buffer>>();
  // Child slots: (parent, child, name bytes), chained per parent in insertion order.
  #s = 0;
  #sParent = new Uint32Array(0);
  #sChild = new Uint32Array(0);
  #sName = new Uint32Array(0);
  #sLen = new Uint32Array(0);
  #sNext = new Int32Array(0);
  /** Slot + 1 by hash of (parent, name); 0 empty. */
  #hash = new Int32Array(0);
  #mask = 0;
  // The current entry's name components (start, length pairs).
  #comps = new Int32Array(512);
  #ncomps = 0;
  // Modification times: the last one's bytes, and each distinct text parsed once.
  #times = new Map<string, { sec: number; ns: number }>();
  #lastTime = -1;
  #time = { sec: 0, ns: 0 };
  // Parent shortcut, as layer-tree.ts: the raw prefix of the last entry's name and its directory.
  #lastPrefix = -1;
  #lastPrefixLen = 0;
  #lastParent = 0;

  constructor(cursor: TocCursor, opts: LayerTreeOptions) {
    this.#c = cursor;
    this.#b = cursor.bytes;
    this.#opaqueXattrs = opts.opaqueXattrs ?? ['trusted.overlay.opaque'];
    this.#growNodes(cursor.length + 64);
    this.#growSlots(cursor.length + 64);
  }

  #growNodes(cap: number): void {
    this.#mode = grown(this.#mode, cap);
    this.#uid = grown(this.#uid, cap);
    this.#gid = grown(this.#gid, cap);
    this.#nlink = grown(this.#nlink, cap);
    this.#rdev = grown(this.#rdev, cap);
    this.#nsec = grown(this.#nsec, cap);
    this.#size = grown(this.#size, cap);
    this.#offset = grown(this.#offset, cap);
    this.#mtime = grown(this.#mtime, cap);
    this.#link = grown(this.#link, cap);
    this.#state = grown(this.#state, cap);
    this.#whiteout = grown(this.#whiteout, cap);
    this.#opaque = grown(this.#opaque, cap);
    this.#first = grown(this.#first, cap);
    this.#last = grown(this.#last, cap);
    this.#count = grown(this.#count, cap);
  }

  #growSlots(cap: number): void {
    this.#sParent = grown(this.#sParent, cap);
    this.#sChild = grown(this.#sChild, cap);
    this.#sName = grown(this.#sName, cap);
    this.#sLen = grown(this.#sLen, cap);
    this.#sNext = grown(this.#sNext, cap);
    let size = 1024;
    while (size < cap * 2) size *= 2;
    if (size <= this.#hash.length) return;
    this.#hash = new Int32Array(size);
    this.#mask = size - 1;
    for (let s = 0; s < this.#s; s++) this.#place(s);
  }

  #hashOf(parent: number, from: number, len: number): number {
    const b = this.#b;
    let h = Math.imul(parent, 0x9e3779b1) ^ 0x811c9dc5;
    for (let i = from; i < from + len; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
    return (h ^ (h >>> 15)) >>> 0;
  }

  #place(s: number): void {
    let h = this.#hashOf(this.#sParent[s] as number, this.#sName[s] as number, this.#sLen[s] as number) & this.#mask;
    while (this.#hash[h] !== 0) h = (h + 1) & this.#mask;
    this.#hash[h] = s + 1;
  }

  /** The child slot named bytes [from, from + len) in directory `parent`, or -1. */
  #find(parent: number, from: number, len: number): number {
    const b = this.#b;
    let h = this.#hashOf(parent, from, len) & this.#mask;
    for (;;) {
      const s = (this.#hash[h] as number) - 1;
      if (s < 0) return -1;
      if (this.#sParent[s] === parent && this.#sLen[s] === len) {
        const at = this.#sName[s] as number;
        let same = true;
        for (let i = 0; i < len && same; i++) same = b[at + i] === b[from + i];
        if (same) return s;
      }
      h = (h + 1) & this.#mask;
    }
  }

  /** Sets child `name` of `parent` to `child`: in place when the name is there (as `Map#set`), else appended. */
  #setChild(parent: number, from: number, len: number, child: number, slot: number): void {
    if (slot >= 0) {
      this.#sChild[slot] = child;
      return;
    }
    if (this.#s >= this.#sParent.length) this.#growSlots(this.#sParent.length * 2);
    const s = this.#s++;
    this.#sParent[s] = parent;
    this.#sChild[s] = child;
    this.#sName[s] = from;
    this.#sLen[s] = len;
    this.#sNext[s] = -1;
    if (this.#count[parent] === 0) this.#first[parent] = s;
    else this.#sNext[this.#last[parent] as number] = s;
    this.#last[parent] = s;
    this.#count[parent] = (this.#count[parent] as number) + 1;
    this.#place(s);
  }

  #newNode(typeBits: number, perm: number): number {
    if (this.#n >= this.#mode.length) this.#growNodes(this.#mode.length * 2);
    const i = this.#n++;
    this.#mode[i] = typeBits | (perm & PERM_MASK);
    this.#nlink[i] = 1;
    this.#link[i] = -1;
    this.#state[i] = 1;
    return i;
  }

  #isDir(i: number): boolean {
    return ((this.#mode[i] as number) & S_IFMT) === S_IFDIR;
  }

  #unlink(i: number): void {
    this.#lastPrefix = -1;
    this.#nlink[i] = (this.#nlink[i] as number) - 1;
    const dir = this.#isDir(i);
    if ((this.#nlink[i] as number) > 0 && !dir) return;
    this.#state[i] = 0;
    if (!dir) return;
    for (let s = this.#count[i] === 0 ? -1 : (this.#first[i] as number); s >= 0; s = this.#sNext[s] as number) this.#unlink(this.#sChild[s] as number);
  }

  /** The tree's `setAttrs` for the cursor's entry. */
  #setAttrs(i: number): void {
    const c = this.#c;
    this.#mode[i] = ((this.#mode[i] as number) & S_IFMT) | (c.mode & PERM_MASK);
    this.#uid[i] = c.uid;
    this.#gid[i] = c.gid;
    const t = this.#timeOf(c.modTime);
    this.#mtime[i] = t.sec;
    this.#nsec[i] = t.ns;
    this.#xattrs.delete(i);
    const x = xattrsOf(c.recordsWithPrefix(XATTR_PREFIX));
    if (x !== undefined) this.#xattrs.set(i, x);
  }

  /** Seconds (as the table stores them) and ns-in-second of the modTime string at `s`, parsed once per text. */
  #timeOf(s: number): { sec: number; ns: number } {
    const b = this.#b;
    const last = this.#lastTime;
    if (s === last) return this.#time;
    if (s >= 0 && last >= 0) {
      const len = this.#u32(s);
      if (len === this.#u32(last)) {
        let same = true;
        for (let i = 4; i < 4 + len && same; i++) same = b[s + i] === b[last + i];
        if (same) return this.#time;
      }
    }
    const text = this.#c.text(s);
    let t = this.#times.get(text);
    if (t === undefined) {
      const p = parseModTime(text);
      t = { sec: Math.floor(p.ms / 1000), ns: p.ns };
      this.#times.set(text, t);
    }
    this.#lastTime = s;
    this.#time = t;
    return t;
  }

  #u32(p: number): number {
    const b = this.#b;
    return ((b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24)) >>> 0;
  }

  /** Splits the string at `s` into components; false when one is `..`. */
  #split(s: number): boolean {
    const b = this.#b;
    this.#ncomps = 0;
    if (s < 0) return true;
    const from = s + 4;
    const to = from + this.#u32(s);
    let start = from;
    for (let i = from; i <= to; i++) {
      if (i < to && b[i] !== SLASH) continue;
      const len = i - start;
      if (len === 2 && b[start] === DOT && b[start + 1] === DOT) return false;
      if (len > 0 && !(len === 1 && b[start] === DOT)) {
        if (this.#ncomps * 2 + 2 > this.#comps.length) {
          const next = new Int32Array(this.#comps.length * 2);
          next.set(this.#comps);
          this.#comps = next;
        }
        this.#comps[this.#ncomps * 2] = start;
        this.#comps[this.#ncomps * 2 + 1] = len;
        this.#ncomps++;
      }
      start = i + 1;
    }
    return true;
  }

  /** The tree's `dirAt` over the first `depth` components; -1 when a non-directory is in the way. */
  #dirAt(depth: number): number {
    let dir = 1;
    for (let k = 0; k < depth; k++) {
      const from = this.#comps[k * 2] as number;
      const len = this.#comps[k * 2 + 1] as number;
      const slot = this.#find(dir, from, len);
      let next = slot < 0 ? 0 : (this.#sChild[slot] as number);
      if (slot < 0 || this.#whiteout[next] === 1) {
        if (slot >= 0) this.#unlink(next);
        next = this.#newNode(S_IFDIR, 0o755);
        this.#setChild(dir, from, len, next, slot);
      } else if (!this.#isDir(next)) {
        return -1;
      }
      dir = next;
    }
    return dir;
  }

  build(): NativeTable | undefined {
    const c = this.#c;
    const b = this.#b;
    this.#newNode(S_IFDIR, 0o755); // the root, inode 1
    for (let k = 0; k < c.length; k++) {
      c.load(k);
      const ns = c.name;
      const nameFrom = ns < 0 ? 0 : ns + 4;
      const nameLen = ns < 0 ? 0 : this.#u32(ns);
      if (!plainText(b, nameFrom, nameFrom + nameLen)) return undefined;
      // Fast path, as the tree's: `prefix/base` with the last entry's raw prefix and a plain base.
      let end = nameFrom + nameLen;
      if (end > nameFrom && b[end - 1] === SLASH) end--;
      let slash = end - 1;
      while (slash >= nameFrom && b[slash] !== SLASH) slash--;
      let parent = 0;
      let baseFrom = 0;
      let baseLen = 0;
      if (this.#lastPrefix >= 0 && slash > nameFrom && slash - nameFrom === this.#lastPrefixLen && end > slash + 1) {
        const lp = this.#lastPrefix;
        let same = true;
        for (let i = 0; i < this.#lastPrefixLen && same; i++) same = b[nameFrom + i] === b[lp + i];
        baseFrom = slash + 1;
        baseLen = end - baseFrom;
        const dots = (baseLen === 1 && b[baseFrom] === DOT) || (baseLen === 2 && b[baseFrom] === DOT && b[baseFrom + 1] === DOT);
        if (same && !dots) parent = this.#lastParent;
      }
      if (parent === 0) {
        if (!this.#split(ns)) continue; // rejected: the name escapes the layer root
        const depth = this.#ncomps;
        if (depth === 0) {
          if (c.type === 'dir') this.#setAttrs(1); // else rejected: a root entry of another type
          continue;
        }
        baseFrom = this.#comps[depth * 2 - 2] as number;
        baseLen = this.#comps[depth * 2 - 1] as number;
        parent = this.#dirAt(depth - 1);
        if (parent < 0) continue; // rejected: a parent is not a directory
        if (slash > nameFrom && baseFrom === slash + 1 && baseFrom + baseLen === end) {
          this.#lastPrefix = nameFrom;
          this.#lastPrefixLen = slash - nameFrom;
          this.#lastParent = parent;
        } else {
          this.#lastPrefix = -1;
        }
      }
      const slot = this.#find(parent, baseFrom, baseLen);
      const existing = slot < 0 ? 0 : (this.#sChild[slot] as number);

      if (baseLen >= 4 && b[baseFrom] === DOT && b[baseFrom + 1] === 0x77 && b[baseFrom + 2] === 0x68 && b[baseFrom + 3] === DOT) {
        const hFrom = baseFrom + 4;
        const hLen = baseLen - 4;
        if (hLen === 8 && b[hFrom] === DOT && b[hFrom + 1] === 0x77 && b[hFrom + 2] === 0x68 && b[hFrom + 3] === DOT
          && b[hFrom + 4] === DOT && b[hFrom + 5] === 0x6f && b[hFrom + 6] === 0x70 && b[hFrom + 7] === 0x71) {
          this.#opaque[parent] = 1; // `.wh..wh..opq`
          continue;
        }
        if (hLen === 0 || (hLen === 1 && b[hFrom] === DOT) || (hLen === 2 && b[hFrom] === DOT && b[hFrom + 1] === DOT)) continue; // rejected
        const rslot = this.#find(parent, hFrom, hLen);
        const real = rslot < 0 ? 0 : (this.#sChild[rslot] as number);
        if (rslot >= 0 && this.#whiteout[real] !== 1) continue; // a real entry of that name wins
        if (rslot >= 0) this.#unlink(real);
        const wh = this.#newNode(S_IFCHR, 0);
        this.#setAttrs(wh);
        this.#mode[wh] = S_IFCHR;
        this.#xattrs.delete(wh);
        this.#whiteout[wh] = 1;
        this.#setChild(parent, hFrom, hLen, wh, rslot);
        continue;
      }

      if (c.type === 'hardlink') {
        const ls = c.linkname;
        const lFrom = ls < 0 ? 0 : ls + 4;
        if (!plainText(b, lFrom, lFrom + (ls < 0 ? 0 : this.#u32(ls)))) return undefined;
        let target = this.#split(ls) ? 1 : 0;
        for (let j = 0; j < this.#ncomps && target !== 0; j++) {
          if (!this.#isDir(target)) {
            target = 0;
            break;
          }
          const s = this.#find(target, this.#comps[j * 2] as number, this.#comps[j * 2 + 1] as number);
          target = s < 0 ? 0 : (this.#sChild[s] as number);
        }
        if (target === 0 || this.#whiteout[target] === 1) {
          throw new CorruptLayer(`hard link ${c.text(ns)} to ${c.text(ls)}: target not found among earlier entries`, c.uncompressedOffset, 'uncompressed');
        }
        if (this.#isDir(target)) continue; // rejected: a hard link to a directory
        if (existing === target) continue;
        if (slot >= 0) this.#unlink(existing);
        this.#nlink[target] = (this.#nlink[target] as number) + 1;
        this.#setChild(parent, baseFrom, baseLen, target, slot);
        continue;
      }

      if (c.type === 'dir' && slot >= 0 && this.#isDir(existing)) {
        this.#setAttrs(existing); // a later entry overwrites a directory's attributes, children stay
        continue;
      }
      if (slot >= 0) this.#unlink(existing);
      const node = this.#newNode(TYPE_BITS[c.type as NodeKind], c.mode);
      this.#setAttrs(node);
      if (c.type === 'reg') {
        this.#size[node] = c.uncompressedSize;
        this.#offset[node] = c.uncompressedOffset;
      } else if (c.type === 'symlink') {
        const ls = c.linkname;
        const len = ls < 0 ? 0 : this.#u32(ls);
        if (ls >= 0 && !plainText(b, ls + 4, ls + 4 + len)) return undefined;
        this.#link[node] = ls;
        this.#size[node] = len;
      } else if (c.type === 'char' || c.type === 'block') {
        this.#rdev[node] = makedev(c.devmajor, c.devminor);
      }
      this.#setChild(parent, baseFrom, baseLen, node, slot);
    }
    return this.#serialize();
  }

  /** serializeTree's layout and order: inodes ascending; each one's dirents or link target, then its xattrs. */
  #serialize(): NativeTable {
    const b = this.#b;
    const state = this.#state;
    const opaqueValue = Buffer.from('y');
    let maxIno = 1;
    let files = 0;
    let ndirents = 0;
    let nxattrs = 0;
    let heap = 1;
    for (let i = 1; i < this.#n; i++) {
      if (state[i] === 0) continue;
      files++;
      maxIno = i;
      if (this.#isDir(i)) {
        let subdirs = 0;
        for (let s = this.#count[i] === 0 ? -1 : (this.#first[i] as number); s >= 0; s = this.#sNext[s] as number) {
          if (this.#isDir(this.#sChild[s] as number)) subdirs++;
          heap += (this.#sLen[s] as number) + 1;
        }
        ndirents += this.#count[i] as number;
        this.#nlink[i] = 2 + subdirs;
        if (this.#opaque[i] === 1) {
          const x = new Map(this.#xattrs.get(i));
          for (const k of this.#opaqueXattrs) x.set(k, opaqueValue);
          this.#xattrs.set(i, x);
        }
      } else if (((this.#mode[i] as number) & S_IFMT) === S_IFLNK) {
        heap += (this.#size[i] as number) + 1;
      }
      const x = this.#xattrs.get(i);
      if (x !== undefined) {
        nxattrs += x.size;
        for (const [k, v] of x) heap += Buffer.byteLength(k) + 1 + v.length;
      }
    }
    const nodes = new Uint8Array((maxIno + 1) * 80);
    const f64 = new Float64Array(nodes.buffer);
    const u32 = new Uint32Array(nodes.buffer);
    const dirents = new Uint32Array(ndirents * 3);
    const xattrs = new Uint32Array(nxattrs * 4);
    const strings = Buffer.allocUnsafe(heap);
    let pos = 0;
    let d = 0;
    let xi = 0;
    let blocks = 0;
    for (let i = 1; i < this.#n; i++) {
      if (state[i] === 0) continue;
      const f = i * 10;
      const u = i * 20;
      const size = this.#size[i] as number;
      f64[f] = size;
      f64[f + 1] = this.#offset[i] as number;
      f64[f + 2] = this.#mtime[i] as number;
      u32[u + 6] = this.#mode[i] as number;
      u32[u + 7] = this.#uid[i] as number;
      u32[u + 8] = this.#gid[i] as number;
      u32[u + 9] = this.#nlink[i] as number;
      u32[u + 10] = this.#rdev[i] as number;
      u32[u + 11] = this.#nsec[i] as number;
      u32[u + 17] = 1;
      if (i === 1) u32[u + 16] = 1;
      blocks += Math.ceil(size / 4096);
      if (this.#isDir(i)) {
        u32[u + 12] = d;
        u32[u + 13] = this.#count[i] as number;
        for (let s = this.#count[i] === 0 ? -1 : (this.#first[i] as number); s >= 0; s = this.#sNext[s] as number) {
          const ci = this.#sChild[s] as number;
          const from = this.#sName[s] as number;
          const len = this.#sLen[s] as number;
          dirents[d * 3] = ci;
          dirents[d * 3 + 1] = pos;
          dirents[d * 3 + 2] = len;
          strings.set(b.subarray(from, from + len), pos);
          pos += len;
          strings[pos++] = 0;
          if (this.#isDir(ci)) u32[ci * 20 + 16] = i;
          d++;
        }
      } else if (((this.#mode[i] as number) & S_IFMT) === S_IFLNK) {
        const from = (this.#link[i] as number) + 4; // 3 when the entry has no link name (size 0)
        u32[u + 12] = pos;
        u32[u + 13] = size;
        strings.set(b.subarray(from, from + size), pos);
        pos += size;
        strings[pos++] = 0;
      }
      const x = this.#xattrs.get(i);
      if (x !== undefined) {
        u32[u + 14] = xi;
        u32[u + 15] = x.size;
        for (const [k, v] of x) {
          xattrs[xi * 4] = pos;
          const n = strings.write(k, pos, 'utf8');
          xattrs[xi * 4 + 1] = n;
          pos += n;
          strings[pos++] = 0;
          xattrs[xi * 4 + 2] = pos;
          xattrs[xi * 4 + 3] = v.length;
          strings.set(v, pos);
          pos += v.length;
          xi++;
        }
      }
    }
    strings[pos++] = 0;
    return { nodes, dirents, xattrs, strings: strings.subarray(0, pos), statBlocks: blocks, statFiles: files };
  }
}
