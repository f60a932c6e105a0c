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
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CorruptLayer } from '../../oci/errors.js';
import { scanToc, tocVectorPosition, type TocView } from '../../indexer/ztoc/toc-view.js';
import type { LayerTreeOptions } from './layer-tree.js';
import type { NativeTable } from './native-fs.js';
import { buildNativeTable } from './native-table.js';

const WORKER_ROLE = 'soci-native-table';

interface BuildRequest {
  kind?: undefined;
  id: number;
  ztoc: Uint8Array;
  opts: LayerTreeOptions;
}

/** A big zTOC to fetch, verify, check and (with `table`) build the table of, all on the worker. */
export interface ZtocFetchRequest {
  url: string;
  headers: Record<string, string>;
  /** The descriptor's digest (sha256) and size. */
  digest: string;
  size: number;
  timeoutMs: number;
  /** Build the native table too (only when the native FUSE server is there to use it). */
  table: boolean;
  opts?: LayerTreeOptions | undefined;
}

interface FetchRequest extends ZtocFetchRequest {
  kind: 'fetch';
  id: number;
}

/** What `fetchZtoc` gives: the verified bytes, whether their TOC passed `scanToc`, and the table (if asked). */
export interface FetchedZtoc {
  bytes: Uint8Array;
  /** True when the worker ran `scanToc` over exactly these bytes and it passed. */
  checked: boolean;
  /** The table as `build` gives it (rejects as it would); undefined when not asked or not checked. */
  table: Promise<NativeTable | undefined> | undefined;
  fetchMs: number;
  scanMs: number;
  buildMs: number;
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

type FetchReply =
  | { id: number; bytes: Uint8Array; checked: boolean; table?: NativeTable | undefined; tableError?: WireError | undefined; fetchMs: number; scanMs: number; buildMs: number }
  | { id: number; error: WireError; fallback: boolean };

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

/** The table's buffers, each owning its whole ArrayBuffer, and the list to transfer. */
function transferable(built: NativeTable): [NativeTable, ArrayBuffer[]] {
  const table: NativeTable = { ...built, nodes: owned(built.nodes), dirents: owned(built.dirents), xattrs: owned(built.xattrs), strings: owned(built.strings) };
  return [table, [table.nodes.buffer, table.dirents.buffer, table.xattrs.buffer, table.strings.buffer] as ArrayBuffer[]];
}

class Fallback extends Error {}

/** One GET of the zTOC into a buffer of its descriptor's size, hashed as it arrives. */
function download(req: ZtocFetchRequest): Promise<Uint8Array> {
  const u = new URL(req.url);
  const [alg, hex] = req.digest.split(':');
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(req.timeoutMs);
    const r = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'GET', headers: req.headers, signal }, (res) => {
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) {
        res.resume();
        reject(new Fallback(`HTTP ${res.statusCode}`));
        return;
      }
      const out = new Uint8Array(req.size);
      const h = createHash(alg as string);
      let got = 0;
      let failed = false;
      res.on('data', (chunk: Buffer) => {
        if (failed) return;
        if (got + chunk.length > req.size) {
          failed = true;
          res.destroy();
          reject(Object.assign(new Error(`${u.pathname}: body longer than the ${req.size} bytes its descriptor says`), { code: 'SIZE_INVALID' }));
          return;
        }
        out.set(chunk, got);
        h.update(chunk);
        got += chunk.length;
      });
      res.on('error', (err) => void (failed || reject(new Fallback(err.message))));
      res.on('end', () => {
        if (failed) return;
        if (got !== req.size) reject(Object.assign(new Error(`${u.pathname}: ${got} bytes, descriptor says ${req.size}`), { code: 'SIZE_INVALID' }));
        else if (h.digest('hex') !== hex) reject(Object.assign(new Error(`${u.pathname}: body does not match its digest`), { code: 'DIGEST_INVALID' }));
        else resolve(out);
      });
    });
    r.on('error', (err) => reject(new Fallback(err.message)));
    r.end();
  });
}

async function serveFetch(port: NonNullable<typeof parentPort>, req: FetchRequest): Promise<void> {
  const t0 = performance.now();
  let bytes: Uint8Array;
  try {
    bytes = await download(req);
  } catch (err) {
    port.postMessage({ id: req.id, error: toWire(err), fallback: err instanceof Fallback } satisfies FetchReply);
    return;
  }
  const t1 = performance.now();
  let view: TocView | undefined;
  try {
    const vector = tocVectorPosition(bytes);
    if (vector >= 0) view = scanToc(bytes, vector);
  } catch {
    view = undefined; // the main thread's own check reports it
  }
  const t2 = performance.now();
  let table: NativeTable | undefined;
  let tableError: WireError | undefined;
  const transfer: ArrayBuffer[] = [bytes.buffer as ArrayBuffer];
  if (view !== undefined && req.table) {
    try {
      const built = buildNativeTable(view, req.opts ?? {});
      if (built !== undefined) {
        const [t, list] = transferable(built);
        table = t;
        transfer.push(...list);
      }
    } catch (err) {
      tableError = toWire(err);
    }
  }
  const t3 = performance.now();
  port.postMessage({ id: req.id, bytes, checked: view !== undefined, table, tableError, fetchMs: t1 - t0, scanMs: t2 - t1, buildMs: t3 - t2 } satisfies FetchReply, transfer);
}

/** As the inline build gives it: the string heap is a Buffer (structured clone makes it a Uint8Array). */
function asBuilt(t: NativeTable): NativeTable {
  return { ...t, strings: Buffer.from(t.strings.buffer, t.strings.byteOffset, t.strings.byteLength) };
}

function serveBuilds(): void {
  const port = parentPort;
  if (port === null) return;
  port.on('message', (req: BuildRequest | FetchRequest) => {
    if (req.kind === 'fetch') {
      void serveFetch(port, req);
      return;
    }
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
      const [table, transfer] = transferable(built);
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
  readonly #fetches = new Map<number, { resolve: (f: FetchedZtoc) => void; reject: (e: Error) => void }>();

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

  /**
   * Fetches a zTOC on the worker (one attempt; `req.headers` carry the auth), verifies it against
   * `req.digest` and `req.size`, checks its TOC and builds its table (`req.table`), and transfers the bytes
   * and the table here. Rejects with `code` `SIZE_INVALID` / `DIGEST_INVALID` for bytes that do not match;
   * any other failure (network, a non-2xx answer, a lost worker) has `fallback: true`: fetch it on this
   * thread instead. Undefined when the worker cannot start.
   */
  fetchZtoc(req: ZtocFetchRequest): Promise<FetchedZtoc> | undefined {
    const w = this.#start();
    if (w === undefined) return undefined;
    const id = this.#next++;
    return new Promise<FetchedZtoc>((resolve, reject) => {
      this.#fetches.set(id, { resolve, reject });
      if (this.#pending.size + this.#fetches.size === 1) w.ref();
      w.postMessage({ ...req, kind: 'fetch', id } satisfies FetchRequest);
    });
  }

  #settleFetch(r: FetchReply): void {
    const p = this.#fetches.get(r.id);
    if (p === undefined) return;
    this.#fetches.delete(r.id);
    if (this.#pending.size + this.#fetches.size === 0) this.#worker?.unref();
    if ('error' in r) {
      p.reject(Object.assign(fromWire(r.error), { fallback: r.fallback }));
      return;
    }
    let table: Promise<NativeTable | undefined> | undefined;
    if (r.tableError !== undefined) table = Promise.reject(fromWire(r.tableError));
    else if (r.table !== undefined) table = Promise.resolve(asBuilt(r.table));
    else if (r.checked) table = Promise.resolve(undefined);
    table?.catch(() => undefined); // whoever uses the table sees the error
    p.resolve({ bytes: r.bytes, checked: r.checked, table, fetchMs: r.fetchMs, scanMs: r.scanMs, buildMs: r.buildMs });
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
    w.on('message', (r: BuildReply | FetchReply) => this.#settle(r));
    w.on('error', () => this.#lost(w));
    w.on('exit', () => this.#lost(w));
    this.#worker = w;
    return w;
  }

  #settle(r: BuildReply | FetchReply): void {
    if (this.#fetches.has(r.id)) {
      this.#settleFetch(r as FetchReply);
      return;
    }
    const p = this.#pending.get(r.id);
    if (p === undefined) return;
    this.#pending.delete(r.id);
    if (this.#pending.size + this.#fetches.size === 0) this.#worker?.unref();
    if ('error' in r) {
      p.reject(fromWire(r.error));
      return;
    }
    this.#onBuilt?.({ entries: p.view.length, where: 'worker', mainMs: p.mainMs, scanMs: r.scanMs, buildMs: r.buildMs, totalMs: performance.now() - p.t0 });
    const t = (r as { table: NativeTable | undefined }).table;
    p.resolve(t === undefined ? undefined : asBuilt(t));
  }

  /** The worker failed or exited: builds under way, and all later ones, are done inline. */
  #lost(w: Worker): void {
    if (this.#worker !== w) return;
    this.#worker = undefined;
    this.#failed = true;
    void w.terminate().catch(() => undefined);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const fetches = [...this.#fetches.values()];
    this.#fetches.clear();
    for (const f of fetches) f.reject(Object.assign(new Error('the table worker stopped'), { fallback: true }));
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
