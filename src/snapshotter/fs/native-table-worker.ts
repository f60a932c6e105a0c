/**
 * `NativeTableWorker`: builds the native FUSE server's table of a big layer (`buildNativeTable`, 160–250 ms
 * on the main thread for a 67k-entry TOC) on a worker thread, so the main thread keeps serving the HTTP
 * responses and inflate dispatch of the other layers' fills meanwhile. A TOC of at most `minEntries`
 * entries is built inline (a round trip costs more than the build). For a big one the zTOC bytes are
 * copied once (the zTOC reader keeps using them) and the copy is transferred; the worker checks the TOC
 * again (`scanToc`, which it needs anyway for the entries' positions), builds the table and transfers its
 * four buffers back: the same bytes as the inline build (the tests compare them). A `CorruptLayer` thrown
 * there is rebuilt here as a `CorruptLayer` with the same message, offset and side; `undefined` (a name
 * the tree must decode) comes back as is. If the worker cannot start or dies, builds fall back to inline.
 * The worker is started by `warm()` (early, while the image resolves) or at the first big build; it is
 * ref'd only while a build is under way, so it never keeps a process alive. This file is both sides: the
 * worker runs it with `workerData` set to `WORKER_ROLE`.
 */
import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CorruptLayer } from '../../oci/errors.js';
import { scanToc, tocVectorPosition, type TocView } from '../../indexer/ztoc/toc-view.js';
import type { LayerTreeOptions } from './layer-tree.js';
import type { NativeTable } from './native-fs.js';
import { buildNativeTable } from './native-table.js';

const WORKER_ROLE = 'soci-native-table';

interface BuildRequest {
  id: number;
  ztoc: Uint8Array;
  opts: LayerTreeOptions;
}

interface WireError {
  name: string;
  message: string;
  code?: string | undefined;
  offset?: number | undefined;
  where?: 'compressed' | 'uncompressed' | undefined;
}

type BuildReply =
  | { id: number; table: NativeTable | undefined; scanMs: number; buildMs: number }
  | { id: number; error: WireError };

/** Where and how long one build took (for benches and logs). */
export interface NativeTableTimings {
  entries: number;
  where: 'inline' | 'worker';
  /** Main thread: copying the zTOC for the worker (worker builds) or the whole build (inline). */
  mainMs: number;
  /** Worker: the TOC check pass and the table build. */
  scanMs: number;
  buildMs: number;
  /** From the call to the table's arrival. */
  totalMs: number;
}

export interface NativeTableWorkerOptions {
  /** TOCs of more entries than this are built on the worker (default 2000). */
  minEntries?: number | undefined;
  onBuilt?: ((t: NativeTableTimings) => void) | undefined;
}

/** `error` as it crosses the thread boundary; a `CorruptLayer` keeps its offset and side. */
function toWire(err: unknown): WireError {
  const e = err as Partial<CorruptLayer> & Error;
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), code: e?.code, offset: e?.offset, where: e?.where };
}

function fromWire(w: WireError): Error {
  let err: Error;
  if (w.code === 'CORRUPT_LAYER') err = new CorruptLayer('', w.offset ?? 0, w.where ?? 'compressed');
  else err = Object.assign(new Error(''), w.code === undefined ? {} : { code: w.code });
  err.message = w.message; // CorruptLayer's message already carries its "(at … offset …)" suffix
  err.name = w.name;
  return err;
}

/** A view of `a`'s own bytes that owns its whole buffer (copied when it does not), to transfer. */
function owned<T extends Uint8Array | Uint32Array>(a: T): T {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && !(a.buffer instanceof SharedArrayBuffer) ? a : (a.slice() as T);
}

function serveBuilds(): void {
  const port = parentPort;
  if (port === null) return;
  port.on('message', (req: BuildRequest) => {
    try {
      const t0 = performance.now();
      const view = scanToc(req.ztoc, tocVectorPosition(req.ztoc));
      const t1 = performance.now();
      const built = buildNativeTable(view, req.opts);
      const t2 = performance.now();
      if (built === undefined) {
        port.postMessage({ id: req.id, table: undefined, scanMs: t1 - t0, buildMs: t2 - t1 } satisfies BuildReply);
        return;
      }
      const table: NativeTable = { ...built, nodes: owned(built.nodes), dirents: owned(built.dirents), xattrs: owned(built.xattrs), strings: owned(built.strings) };
      const transfer = [table.nodes.buffer, table.dirents.buffer, table.xattrs.buffer, table.strings.buffer] as ArrayBuffer[];
      port.postMessage({ id: req.id, table, scanMs: t1 - t0, buildMs: t2 - t1 } satisfies BuildReply, transfer);
    } catch (err) {
      port.postMessage({ id: req.id, error: toWire(err) } satisfies BuildReply);
    }
  });
}

if (!isMainThread && workerData === WORKER_ROLE) serveBuilds();

function startWorker(): Worker {
  // Under tsx the sources are .ts; built output is .js.
  const url = new URL(import.meta.url);
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData: WORKER_ROLE });
  // Node 20 gives worker threads none of the parent's --import hooks: register tsx's CommonJS hook here.
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(url.pathname)});`, { eval: true, workerData: WORKER_ROLE });
}

interface Pending {
  view: TocView;
  opts: LayerTreeOptions;
  t0: number;
  mainMs: number;
  resolve: (t: NativeTable | undefined) => void;
  reject: (e: Error) => void;
}

export class NativeTableWorker {
  readonly minEntries: number;
  readonly #onBuilt: NativeTableWorkerOptions['onBuilt'];
  #worker: Worker | undefined;
  #failed = false;
  #next = 0;
  readonly #pending = new Map<number, Pending>();

  constructor(opts: NativeTableWorkerOptions = {}) {
    this.minEntries = opts.minEntries ?? 2000;
    this.#onBuilt = opts.onBuilt;
  }

  /** Starts the worker now (it takes 30–50 ms), e.g. while the image resolves. */
  warm(): void {
    this.#start();
  }

  /**
   * The table of `view` as `buildNativeTable(view, opts)` gives it (the same bytes, `undefined` or the same
   * `CorruptLayer`); built on the worker when the TOC has more than `minEntries` entries.
   */
  build(view: TocView, opts: LayerTreeOptions = {}): Promise<NativeTable | undefined> {
    const t0 = performance.now();
    const w = view.length > this.minEntries ? this.#start() : undefined;
    if (w === undefined) return this.#inline(view, opts, t0);
    const copy = view.cursor().bytes.slice(); // the reader keeps the original
    const id = this.#next++;
    const mainMs = performance.now() - t0;
    return new Promise<NativeTable | undefined>((resolve, reject) => {
      this.#pending.set(id, { view, opts, t0, mainMs, resolve, reject });
      if (this.#pending.size === 1) w.ref();
      w.postMessage({ id, ztoc: copy, opts } satisfies BuildRequest, [copy.buffer as ArrayBuffer]);
    });
  }

  #inline(view: TocView, opts: LayerTreeOptions, t0: number): Promise<NativeTable | undefined> {
    try {
      const table = buildNativeTable(view, opts);
      const ms = performance.now() - t0;
      this.#onBuilt?.({ entries: view.length, where: 'inline', mainMs: ms, scanMs: 0, buildMs: ms, totalMs: ms });
      return Promise.resolve(table);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  #start(): Worker | undefined {
    if (this.#worker !== undefined || this.#failed) return this.#worker;
    let w: Worker;
    try {
      w = startWorker();
    } catch {
      this.#failed = true;
      return undefined;
    }
    w.unref();
    w.on('message', (r: BuildReply) => this.#settle(r));
    w.on('error', () => this.#lost(w));
    w.on('exit', () => this.#lost(w));
    this.#worker = w;
    return w;
  }

  #settle(r: BuildReply): void {
    const p = this.#pending.get(r.id);
    if (p === undefined) return;
    this.#pending.delete(r.id);
    if (this.#pending.size === 0) this.#worker?.unref();
    if ('error' in r) {
      p.reject(fromWire(r.error));
      return;
    }
    this.#onBuilt?.({ entries: p.view.length, where: 'worker', mainMs: p.mainMs, scanMs: r.scanMs, buildMs: r.buildMs, totalMs: performance.now() - p.t0 });
    const t = r.table;
    // As the inline build gives it: the string heap is a Buffer (structured clone makes it a Uint8Array).
    p.resolve(t === undefined ? undefined : { ...t, strings: Buffer.from(t.strings.buffer, t.strings.byteOffset, t.strings.byteLength) });
  }

  /** The worker failed or exited: builds under way, and all later ones, are done inline. */
  #lost(w: Worker): void {
    if (this.#worker !== w) return;
    this.#worker = undefined;
    this.#failed = true;
    void w.terminate().catch(() => undefined);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) this.#inline(p.view, p.opts, p.t0).then(p.resolve, p.reject);
  }

  /** Stops the worker; builds under way finish inline. */
  async close(): Promise<void> {
    const w = this.#worker;
    if (w === undefined) return;
    this.#lost(w);
    await w.terminate().catch(() => undefined);
  }
}
