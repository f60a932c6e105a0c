/**
 * Mounts one layer read-only with the native low-level libfuse3 server (native/fuse_layer.c, built by
 * scripts/build-native.mjs into <package root>/build/Release/soci_fuse.node). The `LayerTree` is serialized
 * once into flat tables (80-byte inode records indexed by inode number, dirent triples, xattr quads and one
 * NUL-terminated string heap) that C answers every metadata operation from, with no JS. Reads of spans
 * already present in the layer's sparse `contentFile` are one `pread` in C; any other read comes here by
 * token: with a content file, `ensure` the spans and tell C to pread and reply; without, `content.read` (or
 * `readCached`) and hand C the bytes. Every slow read ends in exactly one reply: data, or EIO on an error or
 * past `readTimeoutMs` (then `onReadError(path, err)`). Same contract as `mountLayer`; unmount is idempotent
 * and answers reads still pending with EIO.
 */
import { createRequire } from 'node:module';
import { mkdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { LayerTree } from './layer-tree.js';
import type { LayerContent, MountLayerOptions, MountedLayer } from './layer-fs.js';

const EIO = 5;
const REC_F64 = 10; // 80-byte records: 10 float64 / 20 uint32 slots
const REC_U32 = 20;

interface Addon {
  mount(o: {
    mountpoint: string; options: string; nodes: Uint8Array; dirents: Uint32Array; xattrs: Uint32Array; strings: Uint8Array;
    cacheSeconds: number; statBlocks: number; statFiles: number; listPrefetchBytes: number; contentPath?: string; spanStarts?: Float64Array;
    present?: Uint8Array; onRead: (token: number, ino: number, tarOffset: number, length: number) => void;
  }): object;
  unmount(h: object): Promise<void>;
  replyData(h: object, token: number, bytes: Uint8Array): boolean;
  replyPread(h: object, token: number): number;
  replyError(h: object, token: number, errno: number): boolean;
  stats(h: object): number[];
  lazyUnmount(path: string): number;
  setReadAhead(path: string, kib: number): number;
  setDevice(h: object, dev: number): void;
}

let cached: Addon | null | undefined;
let loadError = '';

function addon(): Addon | undefined {
  if (cached === undefined) {
    try {
      // src/snapshotter/fs and dist/snapshotter/fs are both three levels below the package root.
      cached = createRequire(import.meta.url)('../../../build/Release/soci_fuse.node') as Addon;
    } catch (err) {
      cached = null;
      loadError = (err as Error).message;
    }
  }
  return cached ?? undefined;
}

/** True when build/Release/soci_fuse.node loads (the native FUSE server can be used). */
export function nativeFuseAvailable(): boolean {
  return addon() !== undefined;
}

/** The flat tables native/fuse_layer.c serves (see its header for the layout). */
export interface NativeTable {
  nodes: Uint8Array;
  dirents: Uint32Array;
  xattrs: Uint32Array;
  strings: Uint8Array;
  statBlocks: number;
  statFiles: number;
}

/** Serializes `tree` in one pass over its nodes. Inode numbers are kept, except that the root becomes 1. */
export function serializeTree(tree: LayerTree): NativeTable {
  const rootIno = tree.root.ino;
  const id = (ino: number): number => (ino === rootIno ? 1 : ino === 1 ? rootIno : ino);
  let maxIno = 1;
  let ndirents = 0;
  let nxattrs = 0;
  for (const [ino, n] of tree.byIno) {
    if (id(ino) > maxIno) maxIno = id(ino);
    if (n.children !== undefined) ndirents += n.children.size;
    nxattrs += n.xattrs.size;
  }
  const nodes = new Uint8Array((maxIno + 1) * REC_F64 * 8);
  const f64 = new Float64Array(nodes.buffer);
  const u32 = new Uint32Array(nodes.buffer);
  const dirents = new Uint32Array(ndirents * 3);
  const xattrs = new Uint32Array(nxattrs * 4);
  let strings = Buffer.allocUnsafe(Math.max(4096, ndirents * 24));
  let pos = 0;
  const room = (n: number): void => {
    if (pos + n <= strings.length) return;
    const next = Buffer.allocUnsafe(Math.max(strings.length * 2, pos + n));
    strings.copy(next, 0, 0, pos);
    strings = next;
  };
  const putString = (s: string): number => {
    room(s.length * 3 + 1);
    const n = strings.write(s, pos, 'utf8');
    strings[pos + n] = 0;
    pos += n + 1;
    return n;
  };
  let d = 0;
  let x = 0;
  let blocks = 0;
  for (const [ino, n] of tree.byIno) {
    const i = id(ino);
    const f = i * REC_F64;
    const u = i * REC_U32;
    f64[f] = n.size;
    f64[f + 1] = n.offset;
    f64[f + 2] = Math.floor(n.mtimeMs / 1000);
    u32[u + 6] = n.mode;
    u32[u + 7] = n.uid;
    u32[u + 8] = n.gid;
    u32[u + 9] = n.nlink;
    u32[u + 10] = n.rdev;
    u32[u + 11] = n.mtimeNs;
    u32[u + 17] = 1;
    if (i === 1) u32[u + 16] = 1;
    blocks += Math.ceil(n.size / 4096);
    if (n.children !== undefined) {
      u32[u + 12] = d;
      u32[u + 13] = n.children.size;
      for (const [name, c] of n.children) {
        const ci = id(c.ino);
        dirents[d * 3] = ci;
        dirents[d * 3 + 1] = pos;
        dirents[d * 3 + 2] = putString(name);
        if (c.children !== undefined) u32[ci * REC_U32 + 16] = i;
        d++;
      }
    } else if (n.kind === 'symlink') {
      u32[u + 12] = pos;
      u32[u + 13] = putString(n.linkTarget);
    }
    if (n.xattrs.size > 0) {
      u32[u + 14] = x;
      u32[u + 15] = n.xattrs.size;
      for (const [k, v] of n.xattrs) {
        xattrs[x * 4] = pos;
        xattrs[x * 4 + 1] = putString(k);
        room(v.length);
        xattrs[x * 4 + 2] = pos;
        xattrs[x * 4 + 3] = v.length;
        strings.set(v, pos);
        pos += v.length;
        x++;
      }
    }
  }
  room(1);
  strings[pos++] = 0;
  return { nodes, dirents, xattrs, strings: strings.subarray(0, pos), statBlocks: blocks, statFiles: tree.byIno.size };
}

/** The path of inode `ino` in `t` (a first link of it), for error reports only: scans of the table. */
function pathInTable(t: NativeTable, ino: number): string {
  const u32 = new Uint32Array(t.nodes.buffer, t.nodes.byteOffset, t.nodes.byteLength >>> 2);
  const nnodes = t.nodes.byteLength / (REC_F64 * 8);
  const parts: string[] = [];
  let cur = ino;
  while (cur !== 1 && parts.length < 4096) {
    let d = 0;
    while (d * 3 < t.dirents.length && t.dirents[d * 3] !== cur) d++;
    if (d * 3 >= t.dirents.length) return `<inode ${ino}>`;
    const at = t.dirents[d * 3 + 1] as number;
    parts.push(Buffer.from(t.strings.buffer, t.strings.byteOffset + at, t.dirents[d * 3 + 2] as number).toString('utf8'));
    let parent = 0;
    for (let i = 1; i < nnodes && parent === 0; i++) {
      const u = i * REC_U32;
      const first = u32[u + 12] as number;
      if (((u32[u + 6] as number) & 0o170000) === 0o040000 && u32[u + 17] === 1 && d >= first && d < first + (u32[u + 13] as number)) parent = i;
    }
    if (parent === 0) return `<inode ${ino}>`;
    cur = parent;
  }
  return `/${parts.reverse().join('/')}`;
}

function spanAt(starts: Float64Array, off: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if ((starts[mid] as number) <= off) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** What a native mount exposes beyond `MountedLayer` (for tests and metrics). */
export interface NativeMountedLayer extends MountedLayer {
  /**
   * Reads answered in C from the content file, reads handed to JS, reads waiting in JS now, and how many
   * requests of each kind the kernel sent (`other`: readlink, xattrs, statfs, access, release/releasedir),
   * and files pushed into the page cache by the list prefetch.
   */
  stats(): { fastReads: number; slowReads: number; pending: number; pushed: number; ops: Record<'lookup' | 'getattr' | 'open' | 'read' | 'opendir' | 'readdir' | 'readdirplus' | 'other', number> };
}

/**
 * Mounts `layer` (a tree, serialized here, or a table already built, say by `buildNativeTable`) at
 * `mountpoint` with the native server; resolves once the kernel has initialised it.
 */
export async function mountNativeLayer(mountpoint: string, layer: LayerTree | NativeTable, content: LayerContent, opts: MountLayerOptions = {}): Promise<NativeMountedLayer> {
  const a = addon();
  if (a === undefined) throw new Error(`native FUSE server unavailable (build/Release/soci_fuse.node: ${loadError})`);
  const readTimeout = opts.readTimeoutMs ?? 20_000;
  const cacheSeconds = opts.cacheSeconds ?? 3600;
  try {
    statSync(mountpoint);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') a.lazyUnmount(mountpoint); // a stale FUSE mount
    else mkdirSync(mountpoint, { recursive: true });
  }
  const table = 'root' in layer ? serializeTree(layer) : layer;
  const file = content.contentFile;
  const timers = new Set<NodeJS.Timeout>();
  let handle: object | undefined;

  const onRead = (token: number, ino: number, tarOffset: number, length: number): void => {
    const h = handle as object;
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      timers.delete(timer);
      a.replyError(h, token, EIO);
      opts.onReadError?.(pathInTable(table, ino), err);
    };
    const done = (): void => {
      settled = true;
      clearTimeout(timer);
      timers.delete(timer);
    };
    const timer = setTimeout(() => fail(new Error(`read of ${length} B at ${tarOffset} timed out after ${readTimeout} ms`)), readTimeout);
    timers.add(timer);
    const viaRead = (): void => {
      content.read(tarOffset, length).then((data) => {
        if (settled) return;
        if (data.length < length) return fail(new Error(`short read: ${data.length} of ${length} B at ${tarOffset}`));
        done();
        a.replyData(h, token, data);
      }, fail);
    };
    if (file !== undefined) {
      const first = spanAt(file.spanStarts, tarOffset);
      const last = spanAt(file.spanStarts, tarOffset + length - 1);
      let tries = 0;
      const attempt = (): void => {
        file.ensure(first, last).then(() => {
          if (settled) return;
          const r = a.replyPread(h, token);
          if (r !== -1) return done(); // answered, or already answered by unmount
          if (++tries < 3) return attempt(); // evicted between ensure and pread
          viaRead();
        }, fail);
      };
      attempt();
      return;
    }
    const buf = Buffer.allocUnsafe(length);
    if (content.readCached?.(tarOffset, length, buf) === true) {
      done();
      a.replyData(h, token, buf);
      return;
    }
    viaRead();
  };

  const options = [
    'ro', 'default_permissions', ...((opts.allowOther ?? true) ? ['allow_other'] : []),
    `fsname=${(opts.fsname ?? 'soci-layer').replace(/[,\\]/g, '_')}`, 'subtype=soci',
  ].join(',');
  handle = a.mount({
    mountpoint, options, ...table, cacheSeconds, listPrefetchBytes: opts.listPrefetchBytes ?? 65_536,
    ...(file !== undefined ? { contentPath: file.path, spanStarts: file.spanStarts, present: file.present } : {}),
    onRead,
  });
  const h = handle;
  let done: Promise<void> | undefined;
  const unmount = (): Promise<void> => {
    done ??= a.unmount(h).finally(() => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
    });
    return done;
  };
  try {
    a.setDevice(h, (await stat(mountpoint)).dev); // answered once INIT is done
  } catch (err) {
    await unmount();
    throw err;
  }
  a.setReadAhead(mountpoint, 1024); // best effort: the kernel starts FUSE bdis at 128 KiB
  return {
    mountpoint,
    unmount,
    stats: () => {
      const [fastReads = 0, slowReads = 0, pending = 0, lookup = 0, getattr = 0, open = 0, read = 0, opendir = 0, readdir = 0, readdirplus = 0, other = 0, pushed = 0] = a.stats(h);
      return { fastReads, slowReads, pending, pushed, ops: { lookup, getattr, open, read, opendir, readdir, readdirplus, other } };
    },
  };
}
