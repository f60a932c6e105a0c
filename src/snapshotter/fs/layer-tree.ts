/**
 * The inode tree of one layer, built from its zTOC entries the way the kernel's overlayfs expects a lower
 * layer to look (soci-format.md §7.2). Names are cleaned (no leading `./` or `/`, no trailing `/`, no empty
 * or `.` components); a name with a `..` component is rejected (skipped and recorded in `rejected`). Missing
 * parents are synthesized as 0755 directories; a later entry for an existing directory overwrites its
 * attributes but keeps its children. A hard link shares its target's node (same inode, `nlink` + 1); the
 * target must be an earlier entry, else the whole tree fails (`CorruptLayer`), as soci's metadata reader
 * does. Whiteouts take overlay form: `.wh.NAME` becomes a char device 0:0 named NAME unless a real entry of
 * that name is in the same directory; `.wh..wh..opq` is hidden and its directory reports the opaque xattr.
 * `SCHILY.xattr.*` PAX records become xattrs with the prefix stripped. Pure data: no FUSE here.
 * The entries may come as one reused view object (`ZtocReader.entries()` of a `lazyToc` reader, which also
 * offers `recordsWithPrefix` so that PAX records other than xattrs are never decoded): nothing here keeps
 * an entry, only the strings and numbers read from it.
 */
import { CorruptLayer } from '../../oci/errors.js';
import type { EntryType, FileMetadata } from '../../indexer/types.js';

export const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
/** Permission bits plus setuid, setgid and sticky. */
export const PERM_MASK = 0o7777;

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
/** PAX records with this prefix are xattrs. */
export const XATTR_PREFIX = 'SCHILY.xattr.';

export type NodeKind = Exclude<EntryType, 'hardlink'>;

export interface LayerNode {
  ino: number;
  kind: NodeKind;
  /** Full `st_mode`: file-type bits from the entry type, permission/setuid/setgid/sticky from `mode`. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in ms since the epoch (fractions below 1 ms are in `mtimeNs`). */
  mtimeMs: number;
  /** Nanoseconds within the second of mtime (0–999999999). */
  mtimeNs: number;
  /** Regular files: content length; symlinks: target length; others 0. */
  size: number;
  /** Regular files: offset of the content in the uncompressed tar stream. */
  offset: number;
  /** `makedev(devmajor, devminor)` for char/block devices (0 otherwise; whiteouts are 0:0). */
  rdev: number;
  nlink: number;
  linkTarget: string;
  xattrs: Map<string, Buffer>;
  /** Directories only: children by name. */
  children: Map<string, LayerNode> | undefined;
  /** True for a char device synthesized from `.wh.NAME`. */
  whiteout: boolean;
  /** Directories only: an `.wh..wh..opq` marker was seen inside. */
  opaque: boolean;
}

export interface LayerTree {
  root: LayerNode;
  /** Nodes by inode number (a hard-linked node appears once). */
  byIno: ReadonlyMap<number, LayerNode>;
  /** Entries skipped, with why. */
  rejected: ReadonlyArray<{ name: string; reason: string }>;
  /** The node at a path (`/a/b`, `a/b`, `` and `/` are the root), following no symlinks. */
  lookup(path: string): LayerNode | undefined;
}

export interface LayerTreeOptions {
  /** The xattrs an opaque directory reports (default `trusted.overlay.opaque`). */
  opaqueXattrs?: readonly string[];
}

/** `makedev` as glibc encodes it (what the kernel's `new_encode_dev` reads back for 12-bit majors). */
export function makedev(major: number, minor: number): number {
  return (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12)) >>> 0;
}

/** RFC 3339 (`2023-11-14T22:13:20.25Z`, any offset) to ms + ns-in-second. Empty or bad: epoch. */
export function parseModTime(text: string): { ms: number; ns: number } {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return { ms: 0, ns: 0 };
  const secMs = Date.parse(`${m[1]}${m[3] === 'Z' ? 'Z' : m[3]}`);
  if (Number.isNaN(secMs)) return { ms: 0, ns: 0 };
  const ns = m[2] ? Number(m[2].padEnd(9, '0')) : 0;
  return { ms: secMs + Math.floor(ns / 1e6), ns };
}

/** Splits a tar name into clean path components; `undefined` when it tries to escape (`..`). */
export function nameComponents(name: string): string[] | undefined {
  const parts: string[] = [];
  let from = 0;
  for (;;) {
    const to = name.indexOf('/', from);
    const p = to < 0 ? name.slice(from) : name.slice(from, to);
    if (p === '..') return undefined;
    if (p !== '' && p !== '.') parts.push(p);
    if (to < 0) return parts;
    from = to + 1;
  }
}

/** The `st_mode` file-type bits of each node kind. */
export const TYPE_BITS: Record<NodeKind, number> = {
  reg: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, char: S_IFCHR, block: S_IFBLK, fifo: S_IFIFO,
};

/**
 * The xattrs of an entry's PAX `records` (`SCHILY.xattr.NAME` → NAME, values as UTF-8 bytes; records with
 * another prefix or an empty name are not xattrs), or undefined when there are none.
 */
export function xattrsOf(records: Iterable<readonly [string, string]>): Map<string, Buffer> | undefined {
  let x: Map<string, Buffer> | undefined;
  for (const [k, v] of records) {
    if (!k.startsWith(XATTR_PREFIX) || k.length === XATTR_PREFIX.length) continue;
    (x ??= new Map()).set(k.slice(XATTR_PREFIX.length), Buffer.from(v, 'utf8'));
  }
  return x;
}

/** A TOC entry; `recordsWithPrefix`, when offered, returns the PAX records whose key starts with the prefix. */
export type TreeEntry = FileMetadata & { recordsWithPrefix?(prefix: string): ReadonlyArray<[string, string]> };

export function buildLayerTree(toc: Iterable<TreeEntry>, opts: LayerTreeOptions = {}): LayerTree {
  const opaqueXattrs = opts.opaqueXattrs ?? ['trusted.overlay.opaque'];
  const byIno = new Map<number, LayerNode>();
  const rejected: Array<{ name: string; reason: string }> = [];
  let nextIno = 1;

  // Most entries have no xattrs and share one empty map (replaced, never mutated, when one is needed);
  // modification times repeat a lot across a layer, so each distinct text is parsed once.
  const noXattrs = new Map<string, Buffer>();
  const times = new Map<string, { ms: number; ns: number }>();
  const newNode = (kind: NodeKind, perm: number): LayerNode => {
    const node: LayerNode = {
      ino: nextIno++, kind, mode: TYPE_BITS[kind] | (perm & PERM_MASK), uid: 0, gid: 0, mtimeMs: 0, mtimeNs: 0,
      size: 0, offset: 0, rdev: 0, nlink: 1, linkTarget: '', xattrs: noXattrs,
      children: kind === 'dir' ? new Map() : undefined, whiteout: false, opaque: false,
    };
    byIno.set(node.ino, node);
    return node;
  };
  const setAttrs = (node: LayerNode, e: TreeEntry): void => {
    node.mode = TYPE_BITS[node.kind] | (e.mode & PERM_MASK);
    node.uid = e.uid;
    node.gid = e.gid;
    let t = times.get(e.modTime);
    if (t === undefined) {
      t = parseModTime(e.modTime);
      times.set(e.modTime, t);
    }
    node.mtimeMs = t.ms;
    node.mtimeNs = t.ns;
    node.xattrs = xattrsOf(e.recordsWithPrefix === undefined ? e.xattrs : e.recordsWithPrefix(XATTR_PREFIX)) ?? noXattrs;
  };
  // The parent directory of the last entry, by its raw name prefix: tar order keeps siblings together,
  // so most entries skip the walk from the root. Any unlink may detach it, so every unlink forgets it.
  let lastPrefix: string | undefined;
  let lastParent: LayerNode | undefined;
  const unlink = (node: LayerNode): void => {
    lastPrefix = undefined;
    lastParent = undefined;
    node.nlink -= 1;
    if (node.nlink > 0 && node.kind !== 'dir') return;
    byIno.delete(node.ino);
    for (const c of node.children?.values() ?? []) unlink(c);
  };

  const root = newNode('dir', 0o755);

  /** The directory at `parts`, synthesizing missing ones; undefined when a non-directory is in the way. */
  const dirAt = (parts: readonly string[], depth: number): LayerNode | undefined => {
    let dir = root;
    for (let i = 0; i < depth; i++) {
      const p = parts[i] as string;
      const children = dir.children as Map<string, LayerNode>;
      let next = children.get(p);
      if (next === undefined || next.whiteout) {
        if (next !== undefined) unlink(next);
        next = newNode('dir', 0o755);
        children.set(p, next);
      } else if (next.kind !== 'dir') {
        return undefined;
      }
      dir = next;
    }
    return dir;
  };
  const findNode = (parts: readonly string[]): LayerNode | undefined => {
    let node: LayerNode | undefined = root;
    for (const p of parts) {
      node = node?.children?.get(p);
      if (node === undefined) return undefined;
    }
    return node;
  };

  for (const e of toc) {
    const name = e.name;
    // Fast path: `prefix/base` with the same raw prefix as the previous entry, and a plain base.
    let end = name.length;
    if (end > 0 && name.charCodeAt(end - 1) === 0x2f) end--;
    const slash = name.lastIndexOf('/', end - 1);
    let base: string;
    let parent: LayerNode | undefined;
    if (lastPrefix !== undefined && slash > 0 && name.startsWith(lastPrefix) && slash === lastPrefix.length && end > slash + 1) {
      base = name.slice(slash + 1, end);
      if (base === '.' || base === '..' || base.includes('/')) base = '';
      else parent = lastParent;
    } else {
      base = '';
    }
    if (parent === undefined) {
      const parts = nameComponents(name);
      if (parts === undefined) {
        rejected.push({ name, reason: 'name escapes the layer root (..)' });
        continue;
      }
      if (parts.length === 0) {
        if (e.type === 'dir') setAttrs(root, e);
        else rejected.push({ name, reason: `root entry of type ${e.type}` });
        continue;
      }
      base = parts[parts.length - 1] as string;
      parent = dirAt(parts, parts.length - 1);
      if (parent === undefined) {
        rejected.push({ name, reason: 'a parent is not a directory' });
        continue;
      }
      // Remember the parent under this raw prefix only when the name has the plain form `prefix/base[/]`.
      if (slash > 0 && name.slice(slash + 1, end) === base) {
        lastPrefix = name.slice(0, slash);
        lastParent = parent;
      } else {
        lastPrefix = undefined;
        lastParent = undefined;
      }
    }
    const children = parent.children as Map<string, LayerNode>;
    const existing = children.get(base);

    if (base === OPAQUE_MARKER) {
      parent.opaque = true;
      continue;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const hidden = base.slice(WHITEOUT_PREFIX.length);
      if (hidden === '' || hidden === '.' || hidden === '..') {
        rejected.push({ name: e.name, reason: 'whiteout of an invalid name' });
        continue;
      }
      const real = children.get(hidden);
      if (real !== undefined && !real.whiteout) continue; // a real entry of that name wins
      if (real !== undefined) unlink(real);
      const wh = newNode('char', 0);
      setAttrs(wh, e);
      wh.mode = S_IFCHR;
      wh.xattrs = noXattrs;
      wh.whiteout = true;
      children.set(hidden, wh);
      continue;
    }

    if (e.type === 'hardlink') {
      const targetParts = nameComponents(e.linkname);
      const target = targetParts === undefined ? undefined : findNode(targetParts);
      if (target === undefined || target.whiteout) {
        throw new CorruptLayer(`hard link ${e.name} to ${e.linkname}: target not found among earlier entries`, e.uncompressedOffset, 'uncompressed');
      }
      if (target.kind === 'dir') {
        rejected.push({ name: e.name, reason: 'hard link to a directory' });
        continue;
      }
      if (existing === target) continue;
      if (existing !== undefined) unlink(existing);
      target.nlink += 1;
      children.set(base, target);
      continue;
    }

    if (e.type === 'dir' && existing !== undefined && existing.kind === 'dir') {
      setAttrs(existing, e); // a later entry overwrites a directory's attributes, children stay
      continue;
    }
    if (existing !== undefined) unlink(existing);
    const node = newNode(e.type, e.mode);
    setAttrs(node, e);
    if (e.type === 'reg') {
      node.size = e.uncompressedSize;
      node.offset = e.uncompressedOffset;
    } else if (e.type === 'symlink') {
      node.linkTarget = e.linkname;
      node.size = Buffer.byteLength(e.linkname);
    } else if (e.type === 'char' || e.type === 'block') {
      node.rdev = makedev(e.devmajor, e.devminor);
    }
    children.set(base, node);
  }

  // Directory link counts (2 + subdirectories) and opaque markers.
  for (const node of byIno.values()) {
    if (node.kind !== 'dir') continue;
    let subdirs = 0;
    for (const c of (node.children as Map<string, LayerNode>).values()) if (c.kind === 'dir') subdirs++;
    node.nlink = 2 + subdirs;
    if (!node.opaque) continue;
    node.xattrs = new Map(node.xattrs);
    for (const x of opaqueXattrs) node.xattrs.set(x, Buffer.from('y'));
  }

  return {
    root,
    byIno,
    rejected,
    lookup(path: string): LayerNode | undefined {
      const p = nameComponents(path);
      return p === undefined ? undefined : findNode(p);
    },
  };
}
