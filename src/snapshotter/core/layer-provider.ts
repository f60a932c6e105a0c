/**
 * `SociLayerProvider`, the `LayerProvider` of both front ends (`soci-proxy mount` and the containerd
 * plugin): `mountLazy` resolves the image (cached per manifest digest, see image-resolver.ts), finds the
 * zTOC of `ref.layerDigest` and mounts a read-only FUSE filesystem over a `LazyLayer` shared by every mount
 * of that layer digest (read-ahead spans of all layers are checked and inflated on one worker thread,
 * `SpanInflater`, started at the first read-ahead); `unpack` downloads the whole blob (digest-verified)
 * and unpacks it in overlay form. A big layer's FUSE table is built on a worker thread (`NativeTableWorker`,
 * the resolver's, started as the image resolves; a big zTOC's table comes with it from there), so the small layers mounted meanwhile can start and feed their fills.
 * Failed or slow reads become EIO within `readTimeoutMs`: each HTTP attempt has `fetchTimeoutMs` and
 * transient failures are retried, and nothing failed is cached, so reads work again once the registry is.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Platform } from '../../oci/types.js';
import { OciError } from '../../oci/errors.js';
import type { LayerProvider, LayerRef, MountedLayer } from './types.js';
import { ImageResolver, type ResolvedImage } from './image-resolver.js';
import { LazyLayer } from './lazy-layer.js';
import { addKernelStats, emptyKernelStats, SnapshotterMetrics, type FuseKernelStats } from './metrics.js';
import { parseImageRef, type RangeSourceSpec, type RegistryClient } from './registry-client.js';
import { unpackLayer } from './unpack.js';
import { HttpRangeSource, SpanInflater } from '../remote/index.js';
import type { LayerTree, NativeTable, NativeTableWorker } from '../fs/index.js';

export interface SociLayerProviderOptions {
  client: RegistryClient;
  /** Holds `spans/` (the shared span cache) and `blobs/` (downloads being unpacked). */
  cacheDir: string;
  /** Registry host for image refs without one. */
  defaultHost?: string | undefined;
  platform?: Platform | undefined;
  /** Deadline of one FUSE read (default 20000 ms). */
  readTimeoutMs?: number | undefined;
  /** Deadline of one HTTP attempt for a span (default 10000 ms). */
  fetchTimeoutMs?: number | undefined;
  /** Further attempts after a transient span-fetch failure (default 2). */
  retries?: number | undefined;
  bgFetchPeriodMs?: number | undefined;
  bgQuietMs?: number | undefined;
  /**
   * Layers of at most this many compressed bytes are fetched whole as soon as they are mounted (the bulk
   * fill, BULK_BATCH spans per request; on-demand misses still go first). Default 0: none.
   */
  fillLayerBytes?: number | undefined;
  /** Bound of each layer's span files on disk (default 1 GiB). */
  maxSpanCacheBytes?: number | undefined;
  metrics?: SnapshotterMetrics | undefined;
  /** The image resolver to use (one started early, say); default one of `client` and `platform` that reports to `metrics`. */
  resolver?: ImageResolver | undefined;
  /** Called with each failed FUSE read (the reader got EIO). */
  onReadError?: ((layerDigest: string, path: string, err: unknown) => void) | undefined;
}

const rangeSource = (spec: RangeSourceSpec): HttpRangeSource => new HttpRangeSource(spec.url, spec.options);

interface SharedLayer {
  lazy: LazyLayer;
  /** The native server's table, built straight from the zTOC's TOC; the tree for fuse-native (or a fallback). */
  tree: Promise<LayerTree | NativeTable>;
  refs: number;
}

export class SociLayerProvider implements LayerProvider {
  readonly metrics: SnapshotterMetrics;
  readonly resolver: ImageResolver;
  readonly #o: SociLayerProviderOptions;
  readonly #layers = new Map<string, SharedLayer>();
  readonly #mounts = new Set<MountedLayer>();
  readonly #hits = { memory: 0, disk: 0 };
  /** Kernel-side counts of lazy mounts already unmounted, and the live mounts that report them. */
  readonly #kernel: FuseKernelStats = emptyKernelStats();
  readonly #live = new Set<{ stats(): Parameters<typeof addKernelStats>[1] }>();
  /** One worker thread checks and inflates the spans of every layer, off the thread that answers FUSE. */
  readonly #inflater = new SpanInflater();
  /** Builds big layers' FUSE tables off the main thread (made once the fs code has loaded). */
  #tables: NativeTableWorker | undefined;
  #closed = false;

  constructor(opts: SociLayerProviderOptions) {
    this.#o = opts;
    this.metrics = opts.metrics ?? new SnapshotterMetrics();
    this.resolver = opts.resolver ?? new ImageResolver({ client: opts.client, ...(opts.platform ? { platform: opts.platform } : {}), onEvent: (e) => this.metrics.emit(e) });
  }

  /** Resolves an image reference (`host/repo:tag`, or `repo:tag` with `defaultHost`). */
  resolve(imageRef: string, manifestDigest?: string): Promise<ResolvedImage> {
    if (this.#tables === undefined && !this.#closed) void this.#tableWorker().then((t) => t?.warm(), () => undefined); // boots while the image resolves
    return this.resolver.resolve(parseImageRef(imageRef, this.#o.defaultHost), manifestDigest);
  }

  /** The table worker, when the native FUSE server is there to use its tables. */
  async #tableWorker(): Promise<NativeTableWorker | undefined> {
    const [{ nativeFuseAvailable }, shared] = await Promise.all([import('../fs/index.js'), this.resolver.tableWorker()]);
    if (!nativeFuseAvailable() || shared === undefined) return undefined;
    return (this.#tables ??= shared.worker); // the resolver's: it may have fetched and built big zTOCs' tables already
  }

  async mountLazy(ref: LayerRef, dir: string): Promise<MountedLayer | undefined> {
    const t0 = performance.now();
    const image = await this.resolve(ref.imageRef, ref.manifestDigest);
    const z = image.ztocs.get(ref.layerDigest);
    if (z === undefined) return undefined;
    const { buildLayerTree, mountLayer } = await import('../fs/index.js'); // fuse-native loads only when needed
    const tables = await this.#tableWorker(); // undefined: no native server, so no table (fuse-native takes the tree)
    let shared = this.#layers.get(ref.layerDigest);
    if (shared === undefined) {
      const lazy = new LazyLayer({
        layerDigest: ref.layerDigest,
        reader: z.reader,
        source: rangeSource(this.#o.client.rangeSourceSpec(image.ref, ref.layerDigest, { timeoutMs: this.#o.fetchTimeoutMs ?? 10_000, retries: this.#o.retries ?? 2 })),
        metrics: this.metrics,
        spanCacheDir: join(this.#o.cacheDir, 'spans'),
        maxDiskBytes: this.#o.maxSpanCacheBytes ?? 1024 ** 3,
        bgFetchPeriodMs: this.#o.bgFetchPeriodMs,
        bgQuietMs: this.#o.bgQuietMs,
        inflater: this.#inflater,
      });
      if (z.reader.ztoc.compressedArchiveSize <= (this.#o.fillLayerBytes ?? 0)) lazy.fillAll();
      // A big zTOC's table came with it from the worker (image-resolver.ts); else a big table is built on
      // the worker while this thread serves the other layers, a small one inline. undefined: a name the
      // tree must decode.
      const view = tables === undefined || z.table !== undefined ? undefined : z.reader.tocView();
      const table = tables === undefined ? Promise.resolve(undefined) : z.table ?? (view === undefined ? Promise.resolve(undefined) : tables.build(view));
      shared = { lazy, tree: table.then((t) => t ?? buildLayerTree(z.reader.entries())), refs: 0 };
      shared.tree.catch(() => undefined); // every mount that waits on it sees the error
      this.#layers.set(ref.layerDigest, shared);
    }
    const s = shared;
    s.refs++;
    let fuse;
    try {
      fuse = await mountLayer(dir, await s.tree, s.lazy, {
        readTimeoutMs: this.#o.readTimeoutMs ?? 20_000,
        fsname: `soci-${ref.layerDigest.replace(/^sha256:/, '').slice(0, 12)}`,
        onReadError: (path, err) => {
          this.metrics.emit({ type: 'read-error', layerDigest: ref.layerDigest, path, error: (err as Error).message });
          this.#o.onReadError?.(ref.layerDigest, path, err);
        },
      });
    } catch (err) {
      this.#release(ref.layerDigest, s);
      throw err;
    }
    this.metrics.emit({ type: 'layer', layerDigest: ref.layerDigest, mode: 'lazy', dir, ms: performance.now() - t0 });
    const counted = 'stats' in fuse && typeof fuse.stats === 'function' ? (fuse as typeof fuse & { stats(): Parameters<typeof addKernelStats>[1] }) : undefined;
    if (counted) this.#live.add(counted);
    let done: Promise<void> | undefined;
    const mounted: MountedLayer = {
      dir,
      lazy: true,
      unmount: () => {
        done ??= fuse.unmount().finally(() => {
          if (counted && this.#live.delete(counted)) addKernelStats(this.#kernel, counted.stats());
          this.#mounts.delete(mounted);
          this.#release(ref.layerDigest, s);
        });
        return done;
      },
    };
    this.#mounts.add(mounted);
    return mounted;
  }

  #release(digest: string, s: SharedLayer): void {
    if (--s.refs > 0) return;
    void s.lazy.close().catch(() => undefined); // persists the span file's marks
    this.#inflater.drop(s.lazy.fetcher.reader);
    this.#hits.memory += s.lazy.fetcher.stats.memoryHits;
    this.#hits.disk += s.lazy.fetcher.stats.diskHits;
    if (this.#layers.get(digest) === s) this.#layers.delete(digest);
  }

  async unpack(ref: LayerRef, dir: string): Promise<MountedLayer> {
    const t0 = performance.now();
    const image = await this.resolve(ref.imageRef, ref.manifestDigest);
    const desc = image.manifest.layers.find((l) => l.digest === ref.layerDigest);
    if (desc === undefined) throw new OciError('BLOB_UNKNOWN', `${ref.layerDigest} is not a layer of ${image.manifestDigest}`);
    const blobs = join(this.#o.cacheDir, 'blobs');
    await mkdir(blobs, { recursive: true });
    const file = join(blobs, `${ref.layerDigest.replace(/^sha256:/, '')}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    try {
      const size = await this.#o.client.downloadBlob(image.ref, ref.layerDigest, file);
      if (size !== desc.size) throw new OciError('SIZE_INVALID', `${ref.layerDigest}: ${size} bytes, manifest says ${desc.size}`);
      await unpackLayer(file, dir);
      this.metrics.emit({ type: 'layer', layerDigest: ref.layerDigest, mode: 'unpacked', dir, ms: performance.now() - t0, bytes: size });
    } finally {
      await rm(file, { force: true });
      await rm(`${file}.part`, { force: true });
    }
    return { dir, lazy: false, unmount: () => Promise.resolve() };
  }

  /** Totals so far, with the span caches' hit counts filled in. */
  stats(): SnapshotterMetrics['stats'] {
    const s = this.metrics.stats;
    s.cacheHits = { ...this.#hits };
    for (const l of this.#layers.values()) {
      s.cacheHits.memory += l.lazy.fetcher.stats.memoryHits;
      s.cacheHits.disk += l.lazy.fetcher.stats.diskHits;
    }
    s.fuse.kernel = addKernelStats(emptyKernelStats(), this.#kernel);
    for (const m of this.#live) addKernelStats(s.fuse.kernel, m.stats());
    return s;
  }

  async close(): Promise<void> {
    this.#closed = true;
    void this.#tables?.close();
    await Promise.allSettled([...this.#mounts].map((m) => m.unmount()));
    await Promise.allSettled([...this.#layers.values()].map((l) => l.lazy.close()));
    await this.#inflater.close();
  }
}
