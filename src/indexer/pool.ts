/**
 * Indexes layers on worker threads, so the layers of one image (and of concurrent images) inflate in
 * parallel and the event loop that serves HTTP never runs zlib.
 *
 * The caller keeps reading its source (an upstream HTTP body, a file) on the main thread and the pool
 * moves each chunk to a worker by transferring a copy of its bytes; a small window of unacknowledged
 * chunks gives backpressure, so a slow worker slows the read instead of buffering the layer. Errors come
 * back by `code` (`CorruptLayer`, skips), never by class identity. `size: 0` runs everything in-process.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { CorruptLayer } from '../oci/errors.js';
import { createHash } from 'node:crypto';
import type { Digest } from '../oci/digest.js';
import { indexLayer, skipByMediaType, type IndexLayerOptions, type LayerIndexResult } from './layer-indexer.js';

export interface IndexerPoolOptions {
  /** Worker threads (default: number of cores, at least 1). 0 indexes on the calling thread. */
  size?: number;
  /** Unacknowledged chunks per job before the reader waits (default 8). */
  window?: number;
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
}

type WorkerReply =
  | { type: 'ack'; id: number }
  | { type: 'result'; id: number; result: LayerIndexResult }
  | { type: 'error'; id: number; error: { name: string; code?: string; message: string; offset?: number; where?: 'compressed' | 'uncompressed' } };

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

function workerUrl(): URL {
  // Under tsx the sources are .ts; built output is .js beside this file.
  return new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
}

function newWorker(): Worker {
  const url = workerUrl();
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  // Running from sources under `node --import tsx`: Node 20 does not give worker threads the parent's
  // --import loader hooks, so the worker registers tsx itself before it loads worker.ts.
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`, { eval: true });
}

function rebuildError(e: { name: string; code?: string; message: string; offset?: number; where?: 'compressed' | 'uncompressed' }): Error {
  if (e.code === 'CORRUPT_LAYER') {
    const err = new CorruptLayer(e.message.replace(/ \(at (compressed|uncompressed) offset \d+\)$/, ''), e.offset ?? 0, e.where);
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code) Object.assign(err, { code: e.code });
  return err;
}

export class IndexerPool implements LayerIndexerService {
  readonly #slots: Slot[] = [];
  readonly #size: number;
  readonly #window: number;
  #nextId = 1;
  #closed = false;

  constructor(opts: IndexerPoolOptions = {}) {
    this.#size = opts.size ?? Math.max(1, availableParallelism());
    this.#window = opts.window ?? 8;
  }

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
    let job!: Job;
    const done = new Promise<LayerIndexResult>((resolve, reject) => {
      job = { id, resolve, reject, acked: 0, wake: undefined };
    });
    slot.jobs.set(id, job);
    slot.worker.postMessage({ type: 'start', id, opts: { ...opts, externalDigest: true } });
    let sent = 0;
    let failed = false;
    // A skip or an error ends the job early; the source is then not read further.
    done.then(() => { failed = true; }, () => { failed = true; });
    try {
      for await (const chunk of source) {
        if (failed) break;
        if (chunk.length === 0) continue;
        hash.update(chunk);
        total += chunk.length;
        const copy = new Uint8Array(chunk.length);
        copy.set(chunk);
        slot.worker.postMessage({ type: 'chunk', id, buf: copy }, [copy.buffer]);
        sent++;
        while (!failed && sent - job.acked > this.#window) {
          await new Promise<void>((r) => { job.wake = r; });
        }
      }
      if (!failed) slot.worker.postMessage({ type: 'end', id });
    } catch (err) {
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
    const slot: Slot = { worker, jobs: new Map() };
    worker.on('message', (msg: WorkerReply) => {
      const job = slot.jobs.get(msg.id);
      if (!job) return;
      if (msg.type === 'ack') {
        job.acked++;
        const w = job.wake;
        job.wake = undefined;
        w?.();
        return;
      }
      slot.jobs.delete(msg.id);
      const w = job.wake;
      job.wake = undefined;
      if (msg.type === 'result') job.resolve(msg.result);
      else job.reject(rebuildError(msg.error));
      w?.();
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
