/**
 * Indexes layers on worker threads, so the layers of one image (and of concurrent images) inflate in
 * parallel and the event loop that serves HTTP never runs zlib.
 *
 * The caller keeps reading its source (an upstream HTTP body, a file) on the main thread. The pool copies
 * the bytes into batches (`batchBytes`, default 1 MiB, whatever the source's chunk size) and transfers
 * each batch to a worker; a small window of unacknowledged batches gives backpressure, so a slow worker
 * slows the read instead of buffering the layer. The main thread hashes the layer (sha256 of the blob) as
 * it reads; the worker inflates, places checkpoints and builds the tar TOC. A gzip layer's span digests
 * (a second sha256 pass) are shared between them: each ack transfers the batch back with the checkpoints
 * placed in it, each span marked for the main thread when the worker has a backlog of batches or the
 * read is over (see worker.ts), so the two threads stay about equally busy; the main thread hashes its spans from the
 * returned batch (`SpanDigester`) and reuses the buffer. At the end the worker asks for the main thread's
 * digests and encodes the zTOC. Errors come back by `code` (`CorruptLayer`, skips), never by class
 * identity. `size: 0` runs everything in-process.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { CorruptLayer } from '../oci/errors.js';
import { layerCompression } from '../oci/media-types.js';
import type { Digest } from '../oci/digest.js';
import { SpanDigester } from './gzip/index.js';
import { indexLayer, skipByMediaType, type IndexLayerOptions, type LayerIndexResult } from './layer-indexer.js';

export interface IndexerPoolOptions {
  /** Worker threads (default: number of cores, at least 1). 0 indexes on the calling thread. */
  size?: number;
  /** Unacknowledged batches per job before the reader waits (default 8). */
  window?: number;
  /** Bytes per batch sent to a worker (default 1 MiB). */
  batchBytes?: number;
}

/** What the proxy and the CLI need from an indexer. */
export interface LayerIndexerService {
  index(source: AsyncIterable<Uint8Array>, opts: IndexLayerOptions): Promise<LayerIndexResult>;
  close(): Promise<void>;
}

interface Job {
  id: number;
  resolve: (r: LayerIndexResult) => void;
  reject: (e: Error) => void;
  acked: number;
  wake: (() => void) | undefined;
  /** Hashes a gzip layer's spans from the batches the worker hands back (undefined for a plain tar). */
  digester: SpanDigester | undefined;
  /** Returned batch buffers, for reuse (a couple at most: the rest go back to the allocator). */
  free: Uint8Array[];
}

type ErrorRecord = { name: string; code?: string; message: string; offset?: number; where?: 'compressed' | 'uncompressed' };

type WorkerReply =
  | { type: 'ack'; id: number; buf: Uint8Array; cps: number[]; open: boolean }
  // cps: flat (in, bits, 1 when this thread hashes the span) triples
  | { type: 'spans'; id: number; count: number }
  | { type: 'result'; id: number; result: LayerIndexResult }
  | { type: 'error'; id: number; error: ErrorRecord };

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
  /** False until the worker's first message: while it starts, readers may run further ahead. */
  ready: boolean;
}

/** While a worker starts (~40 ms built, ~100 ms under tsx), this many windows may be in flight. */
const STARTUP_WINDOWS = 4;

function workerUrl(): URL {
  // Under tsx the sources are .ts; built output is .js beside this file.
  return new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
}

function newWorker(): Worker {
  const url = workerUrl();
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  // Running from sources under `node --import tsx`: Node 20 does not give worker threads the parent's
  // --import loader hooks, so the worker registers tsx itself before it loads worker.ts. tsx's CommonJS
  // hook runs in the worker's own thread; its ESM loader would start a hooks thread first and triples
  // the worker's start-up time (about 300 ms against 100 ms), which a one-layer job pays in full.
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(url.pathname)});`, { eval: true });
}

function rebuildError(e: ErrorRecord): Error {
  if (e.code === 'CORRUPT_LAYER') {
    const err = new CorruptLayer(e.message.replace(/ \(at (compressed|uncompressed) offset \d+\)$/, ''), e.offset ?? 0, e.where);
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code) Object.assign(err, { code: e.code });
  return err;
}

function checkpointsOf(flat: number[]): Array<{ in: number; bits: number; mine: boolean }> {
  const cps: Array<{ in: number; bits: number; mine: boolean }> = [];
  for (let i = 0; i < flat.length; i += 3) cps.push({ in: flat[i]!, bits: flat[i + 1]!, mine: flat[i + 2] === 1 });
  return cps;
}

export class IndexerPool implements LayerIndexerService {
  readonly #slots: Slot[] = [];
  readonly #size: number;
  readonly #window: number;
  readonly #batchBytes: number;
  #nextId = 1;
  #closed = false;

  constructor(opts: IndexerPoolOptions = {}) {
    this.#size = opts.size ?? Math.max(1, availableParallelism());
    this.#window = opts.window ?? 8;
    this.#batchBytes = opts.batchBytes ?? 1 << 20;
    if (!Number.isSafeInteger(this.#batchBytes) || this.#batchBytes < 1) throw new RangeError(`invalid batchBytes ${this.#batchBytes}`);
  }

  /**
   * Indexes one layer read from `source`. Its chunks are always copied into the pool's own batch buffers
   * (transferring a chunk that owns its ArrayBuffer would save the copy, about 10% of this thread's work,
   * but would detach memory the caller may still hold, e.g. a Buffer passed as `[blob]`).
   */
  async index(source: AsyncIterable<Uint8Array>, opts: IndexLayerOptions): Promise<LayerIndexResult> {
    if (this.#closed) throw new Error('indexer pool is closed');
    const early = skipByMediaType(opts.mediaType);
    if (early) return early;
    if (this.#size === 0) return indexLayer(source, opts);
    const slot = this.#pickSlot();
    // The layer's sha256 runs here, on the reading thread, while the worker inflates (in parallel).
    const hash = createHash('sha256');
    let total = 0;
    const id = this.#nextId++;
    const gzip = layerCompression(opts.mediaType) === 'gzip';
    let job!: Job;
    const done = new Promise<LayerIndexResult>((resolve, reject) => {
      job = { id, resolve, reject, acked: 0, wake: undefined, digester: gzip ? new SpanDigester() : undefined, free: [] };
    });
    slot.jobs.set(id, job);
    // Shared with the worker, which reads it when it places a checkpoint: [batches posted, 1 once the read is over].
    const progress = new Int32Array(new SharedArrayBuffer(8));
    slot.worker.postMessage({ type: 'start', id, opts: { ...opts, externalDigest: true }, externalSpans: gzip, progress });
    let sent = 0;
    let failed = false;
    // A skip or an error ends the job early; the source is then not read further.
    done.then(() => { failed = true; }, () => { failed = true; });
    let batch: Uint8Array | undefined;
    let fill = 0;
    const flush = async (): Promise<void> => {
      const b = batch as Uint8Array;
      slot.worker.postMessage({ type: 'chunk', id, buf: fill === b.length ? b : b.subarray(0, fill) }, [b.buffer as ArrayBuffer]);
      batch = undefined;
      fill = 0;
      Atomics.store(progress, 0, ++sent);
      while (!failed && sent - job.acked > (slot.ready ? this.#window : this.#window * STARTUP_WINDOWS)) {
        await new Promise<void>((r) => { job.wake = r; });
      }
    };
    try {
      for await (const chunk of source) {
        if (failed) break;
        if (chunk.length === 0) continue;
        hash.update(chunk);
        total += chunk.length;
        for (let p = 0; p < chunk.length && !failed;) {
          batch ??= job.free.pop() ?? new Uint8Array(this.#batchBytes);
          const n = Math.min(chunk.length - p, batch.length - fill);
          batch.set(n === chunk.length ? chunk : chunk.subarray(p, p + n), fill);
          fill += n;
          p += n;
          if (fill === batch.length) await flush();
        }
      }
      if (!failed && fill > 0) await flush();
      Atomics.store(progress, 1, 1);
      if (!failed) slot.worker.postMessage({ type: 'end', id });
    } catch (err) {
      Atomics.store(progress, 1, 1);
      slot.worker.postMessage({ type: 'abort', id });
      slot.jobs.delete(id);
      throw err;
    }
    const result = await done;
    if (result.status !== 'indexed') return result;
    // An indexed result means the worker saw the whole stream: check the digest of what it saw.
    const layerDigest: Digest = `sha256:${hash.digest('hex')}`;
    if (opts.expectedDigest !== undefined && layerDigest !== opts.expectedDigest) {
      throw new CorruptLayer(`layer digest ${layerDigest} does not match ${opts.expectedDigest}`, total);
    }
    return { ...result, layerDigest };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  #pickSlot(): Slot {
    if (this.#slots.length < this.#size) {
      const slot = this.#spawn();
      this.#slots.push(slot);
      return slot;
    }
    let best = this.#slots[0] as Slot;
    for (const s of this.#slots) if (s.jobs.size < best.jobs.size) best = s;
    return best;
  }

  #spawn(): Slot {
    const worker = newWorker();
    worker.unref();
    const slot: Slot = { worker, jobs: new Map(), ready: false };
    const settle = (job: Job, fn: () => void): void => {
      slot.jobs.delete(job.id);
      const w = job.wake;
      job.wake = undefined;
      fn();
      w?.();
    };
    // The span digests are computed here; a failure there is the pool's own bug, never a corrupt layer.
    const internal = (job: Job, err: unknown): void => {
      worker.postMessage({ type: 'abort', id: job.id });
      settle(job, () => job.reject(new Error(`indexer pool: ${(err as Error).message}`)));
    };
    worker.on('message', (msg: WorkerReply) => {
      slot.ready = true;
      const job = slot.jobs.get(msg.id);
      if (!job) return;
      switch (msg.type) {
        case 'ack': {
          job.acked++;
          try {
            job.digester?.advance(msg.buf, checkpointsOf(msg.cps), msg.open);
          } catch (err) {
            internal(job, err);
            return;
          }
          if (msg.buf.buffer.byteLength === this.#batchBytes && job.free.length < 2) job.free.push(new Uint8Array(msg.buf.buffer));
          const w = job.wake;
          job.wake = undefined;
          w?.();
          return;
        }
        case 'spans': {
          let digests: Array<string | undefined>;
          try {
            if (!job.digester) throw new Error('span digests asked for a layer without a span digester');
            digests = job.digester.finish(msg.count);
          } catch (err) {
            internal(job, err);
            return;
          }
          worker.postMessage({ type: 'digests', id: job.id, digests });
          return;
        }
        case 'result':
          settle(job, () => job.resolve(msg.result));
          return;
        case 'error':
          settle(job, () => job.reject(rebuildError(msg.error)));
          return;
      }
    });
    const fail = (err: Error): void => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      for (const job of slot.jobs.values()) {
        job.reject(new Error(`indexer worker failed: ${err.message}`));
        job.wake?.();
      }
      slot.jobs.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => { if (slot.jobs.size) fail(new Error(`exited with code ${code}`)); });
    return slot;
  }
}
