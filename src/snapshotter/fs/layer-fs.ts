/**
 * Mounts one layer read-only with fuse-native (test-environment.md §7): the `LayerTree` gives names,
 * attributes and xattrs; regular-file reads go through the layer's `SpanFetcher`, so only the spans a read
 * touches are fetched. A failed or slow read is `EIO` after `readTimeoutMs` (never a hung process in the
 * container); every write operation is `EROFS`. fuse-native speaks libfuse 2's path-based API, which
 * replaces `st_ino` unless `use_ino` is set; it has no option for that, so `use_ino` rides along in the
 * `fsname` option string (libfuse splits `-o` values at commas), which makes hard links report one inode;
 * `ro` rides along the same way, so the kernel refuses opens for writing itself. Every op is a hop from a
 * libfuse thread to the Node main thread, so the table leaves out what libfuse answers alone: `open` and
 * `release` (the layer never changes and reads go by path; `kernel_cache` keeps file pages across opens),
 * and reads of bytes already in memory answer without a promise.
 * Unmount overlays that use this mount as a lowerdir before calling `unmount()` (§9).
 * `backend` picks the server: 'auto' (default) uses the native libfuse3 low-level server (native-fs.ts) when
 * build/Release/soci_fuse.node loads, else fuse-native, which is then imported on first use only.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:os';
import type { FuseOps, FuseStat } from 'fuse-native';
import type { LayerNode, LayerTree } from './layer-tree.js';
import { mountNativeLayer, nativeFuseAvailable, type NativeTable } from './native-fs.js';

/**
 * A layer's uncompressed tar stream kept in one sparse file at its own offsets, so a native FUSE server can
 * answer reads of present spans with one `pread` and no hop to JS. Span `i` occupies
 * `[spanStarts[i], spanStarts[i + 1])` of the file. `present[i]` becomes 1 only after the span's bytes are
 * fully written; eviction clears it before punching the hole, so a reader checks `present`, reads, and
 * checks again (a cleared byte means: treat as missing and call `ensure`).
 */
export interface LayerContentFile {
  readonly path: string;
  /** Uncompressed start of each span, then the stream's end (length = spans + 1). */
  readonly spanStarts: Float64Array;
  /** One byte per span over a SharedArrayBuffer: 1 = its bytes are in the file. */
  readonly present: Uint8Array;
  /**
   * Makes spans `first..last` (inclusive) present: fetched, digest-checked, inflated and written; counts
   * as an on-demand read (read-ahead and the background filler react to it). Rejects if a span cannot be
   * fetched or verified.
   */
  ensure(first: number, last: number): Promise<void>;
}

/** What the filesystem needs to read file content: uncompressed tar-stream ranges. */
export interface LayerContent {
  /** Set when the content is kept in a sparse file (the native FUSE fast path reads it directly). */
  readonly contentFile?: LayerContentFile | undefined;
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Copies `[offset, offset + length)` into `into` at once and returns true when every byte is already in
   * memory; false (nothing read) otherwise. Lets a read be answered without a promise hop.
   */
  readCached?(offset: number, length: number, into: Uint8Array): boolean;
}

export interface MountLayerOptions {
  /** Deadline of one FUSE read in ms (default 20 s); past it the read returns EIO. */
  readTimeoutMs?: number;
  /** Pass `allow_other` so other users (containers) can read (default true). */
  allowOther?: boolean;
  /** Kernel attribute/entry cache seconds (default 3600: a layer never changes). */
  cacheSeconds?: number;
  /** Called with each read error (for logs); the reader sees EIO. */
  onReadError?: (path: string, err: unknown) => void;
  /** fsname shown in /proc/mounts (default `soci-layer`). */
  fsname?: string;
  /**
   * Native server with a content file only: when a directory is listed, its regular files of at most this
   * many bytes whose spans are present are pushed into the kernel page cache in the background, so reading
   * them costs no FUSE round trip (default 65536; 0 turns it off). Nothing is fetched for it.
   */
  listPrefetchBytes?: number;
  /** FUSE server: 'native' (libfuse3 low-level, C), 'fuse-native', or 'auto' (default: native when it loads). */
  backend?: 'auto' | 'native' | 'fuse-native';
}

export interface MountedLayer {
  readonly mountpoint: string;
  unmount(): Promise<void>;
}

const W_OK = 2;
/** fuse-native takes negative errno values. */
const Fuse = {
  ENOENT: -constants.errno.ENOENT, EROFS: -constants.errno.EROFS, ENOTDIR: -constants.errno.ENOTDIR,
  EINVAL: -constants.errno.EINVAL, EIO: -constants.errno.EIO,
} as const;
const READ_ONLY_OPS = [
  'write', 'create', 'unlink', 'mkdir', 'rmdir', 'rename', 'link', 'symlink', 'chmod', 'chown', 'truncate',
  'ftruncate', 'utimens', 'mknod', 'setxattr', 'removexattr',
] as const;

function statOf(n: LayerNode): FuseStat {
  return {
    mode: n.mode, uid: n.uid, gid: n.gid, size: n.size, nlink: n.nlink, ino: n.ino, rdev: n.rdev,
    blksize: 4096, blocks: Math.ceil(n.size / 512), atime: n.mtimeMs, mtime: n.mtimeMs, ctime: n.mtimeMs,
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => execFile(cmd, args, { timeout: 10_000 }, (err) => (err ? reject(err) : resolve())));
}

/** The fuse-native operation table of a mounted layer (exported for tests of the ops themselves). */
export function layerOps(tree: LayerTree, content: LayerContent, opts: MountLayerOptions = {}): FuseOps {
  const readTimeout = opts.readTimeoutMs ?? 20_000;
  const ops: FuseOps = {
    init: (cb) => cb(0),
    getattr(path, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      cb(0, statOf(n));
    },
    fgetattr(path, _fd, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      cb(0, statOf(n));
    },
    access(path, mode, cb) {
      if (tree.lookup(path) === undefined) return cb(Fuse.ENOENT);
      cb(mode & W_OK ? Fuse.EROFS : 0);
    },
    statfs(_path, cb) {
      let blocks = 0;
      for (const n of tree.byIno.values()) blocks += Math.ceil(n.size / 4096);
      cb(0, { bsize: 4096, frsize: 4096, blocks, bfree: 0, bavail: 0, files: tree.byIno.size, ffree: 0, favail: 0, namemax: 255 });
    },
    readdir(path, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      if (n.children === undefined) return cb(Fuse.ENOTDIR);
      const names = ['.', '..', ...n.children.keys()];
      const stats = [statOf(n), statOf(n), ...[...n.children.values()].map(statOf)];
      cb(0, names, stats);
    },
    readlink(path, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      if (n.kind !== 'symlink') return cb(Fuse.EINVAL);
      cb(0, n.linkTarget);
    },
    read(path, _fd, buf, len, pos, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      if (n.kind !== 'reg') return cb(Fuse.EINVAL);
      const want = Math.max(0, Math.min(len, n.size - pos));
      if (want === 0) return cb(0);
      if (content.readCached?.(n.offset + pos, want, buf) === true) return cb(want);
      withTimeout(content.read(n.offset + pos, want), readTimeout, `read of ${path}`).then(
        (data) => {
          Buffer.from(data.buffer, data.byteOffset, data.length).copy(buf, 0, 0, want);
          cb(want);
        },
        (err: unknown) => {
          opts.onReadError?.(path, err);
          cb(Fuse.EIO);
        },
      );
    },
    getxattr(path, name, _position, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      cb(0, n.xattrs.get(name) ?? null);
    },
    listxattr(path, cb) {
      const n = tree.lookup(path);
      if (n === undefined) return cb(Fuse.ENOENT);
      cb(0, [...n.xattrs.keys()]);
    },
  };
  for (const name of READ_ONLY_OPS) {
    ops[name] = (...args: unknown[]) => (args[args.length - 1] as (e: number) => void)(Fuse.EROFS);
  }
  return ops;
}

/**
 * Mounts `layer` at `mountpoint` (created if missing); resolves once the kernel has initialised it. A
 * `NativeTable` (see native-table.ts) mounts with the native server only: fuse-native needs the tree.
 */
export async function mountLayer(mountpoint: string, layer: LayerTree | NativeTable, content: LayerContent, opts: MountLayerOptions = {}): Promise<MountedLayer> {
  const backend = opts.backend ?? 'auto';
  if (backend === 'native' || (backend === 'auto' && nativeFuseAvailable())) return mountNativeLayer(mountpoint, layer, content, opts);
  if (!('root' in layer)) throw new Error('a native table mounts with the native FUSE server only (fuse-native needs the LayerTree)');
  const tree = layer;
  const { default: FuseNative } = await import('fuse-native');
  const readTimeout = opts.readTimeoutMs ?? 20_000;
  const cacheSeconds = opts.cacheSeconds ?? 3600;
  const fuse = new FuseNative(mountpoint, layerOps(tree, content, opts), {
    force: true,
    mkdir: true,
    allowOther: opts.allowOther ?? true,
    fsname: `${(opts.fsname ?? 'soci-layer').replace(/[,\\]/g, '_')},use_ino,ro`,
    subtype: 'soci',
    maxRead: 1024 * 1024,
    kernelCache: true,
    ...(cacheSeconds > 0 ? { attrTimeout: cacheSeconds, entryTimeout: cacheSeconds } : {}),
    // fuse-native's own per-op deadline is a backstop behind ours.
    timeout: readTimeout + 5_000,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  let done: Promise<void> | undefined;
  return {
    mountpoint: fuse.mnt,
    unmount(): Promise<void> {
      done ??= new Promise<void>((resolve) => fuse.unmount((err) => resolve(err ? run('fusermount', ['-uz', fuse.mnt]).catch(() => undefined) : undefined)));
      return done;
    },
  };
}
