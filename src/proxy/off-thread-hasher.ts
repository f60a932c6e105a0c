/**
 * Digest verification off the event loop. Hashing a blob on the main thread costs about as much as
 * everything else the pass-through does (sha256 runs at ~1.4 GB/s here; measured: a cold 109 MB blob went
 * from ~330 to ~500 MB/s with hashing removed, bench/results/proxy.md), so streamed upstream blobs are
 * hashed on one shared worker thread instead: chunks are copied into 1 MiB batches whose buffers are
 * transferred (not cloned) to the worker, which acknowledges each batch by transferring its buffer back
 * for the next batch (a few are pooled: fresh zeroed megabytes per batch cost memset and major GCs, the
 * external memory counting against the heap); a stream more than `maxInFlight`
 * batches ahead waits (`drained()`). `digest()` resolves after every batch was hashed. If the worker dies,
 * every open job rejects — a blob whose digest cannot be proven is aborted, never completed.
 */
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (m) => {
  if (m.t === 's') jobs.set(m.id, createHash(m.alg));
  else if (m.t === 'd') { jobs.get(m.id)?.update(m.buf); parentPort.postMessage({ t: 'a', id: m.id, buf: m.buf }, [m.buf.buffer]); }
  else if (m.t === 'e') { const h = jobs.get(m.id); jobs.delete(m.id); parentPort.postMessage({ t: 'h', id: m.id, hex: h ? h.digest('hex') : '' }); }
  else if (m.t === 'c') jobs.delete(m.id);
});
`;

const BATCH = 1 << 20;
/** Batch buffers kept for reuse across all jobs. */
const POOL = 8;

export interface HashJob {
  /** Queues a chunk; false when the caller should wait for `drained()`. */
  update(chunk: Uint8Array): boolean;
  drained(): Promise<void>;
  /** `<alg>:<hex>` of everything queued. */
  digest(): Promise<string>;
  cancel(): void;
}

interface JobState {
  inFlight: number;
  wake: (() => void) | undefined;
  done: ((hex: string) => void) | undefined;
  fail: (err: Error) => void;
}

export class OffThreadHasher {
  #worker: Worker | undefined;
  readonly #jobs = new Map<number, JobState>();
  readonly #maxInFlight: number;
  readonly #pool: Uint8Array[] = [];
  #nextId = 1;

  constructor(opts: { maxInFlight?: number } = {}) {
    this.#maxInFlight = opts.maxInFlight ?? 16;
  }

  #spawn(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    w.on('message', (m: { t: 'a' | 'h'; id: number; hex?: string; buf?: Uint8Array }) => {
      if (m.buf !== undefined && m.buf.length === BATCH && this.#pool.length < POOL) this.#pool.push(m.buf);
      const job = this.#jobs.get(m.id);
      if (!job) return;
      if (m.t === 'a') {
        job.inFlight--;
        const wake = job.wake;
        job.wake = undefined;
        wake?.();
      } else {
        this.#jobs.delete(m.id);
        job.done?.(m.hex ?? '');
      }
    });
    const die = (err: Error): void => {
      if (this.#worker === w) this.#worker = undefined;
      for (const job of this.#jobs.values()) job.fail(err);
      this.#jobs.clear();
    };
    w.on('error', die);
    w.on('exit', (code) => die(new Error(`hash worker exited (${code})`)));
    this.#worker = w;
    return w;
  }

  start(alg: 'sha256' | 'sha512'): HashJob {
    const w = this.#spawn();
    const id = this.#nextId++;
    let failure: Error | undefined;
    let reject: ((err: Error) => void) | undefined;
    const state: JobState = {
      inFlight: 0,
      wake: undefined,
      done: undefined,
      fail: (err) => {
        failure ??= err;
        state.wake?.();
        reject?.(err);
      },
    };
    this.#jobs.set(id, state);
    w.postMessage({ t: 's', id, alg });
    let batch: Uint8Array | undefined;
    let fill = 0;
    const flush = (): void => {
      if (!batch || fill === 0) return;
      const b = fill === batch.length ? batch : batch.slice(0, fill);
      state.inFlight++;
      w.postMessage({ t: 'd', id, buf: b }, [b.buffer as ArrayBuffer]);
      batch = undefined;
      fill = 0;
    };
    return {
      update: (chunk) => {
        for (let p = 0; p < chunk.length; ) {
          batch ??= this.#pool.pop() ?? new Uint8Array(BATCH);
          const n = Math.min(chunk.length - p, BATCH - fill);
          batch.set(chunk.subarray(p, p + n), fill);
          fill += n;
          p += n;
          if (fill === BATCH) flush();
        }
        return failure !== undefined || state.inFlight < this.#maxInFlight;
      },
      drained: () =>
        failure !== undefined || state.inFlight < this.#maxInFlight
          ? Promise.resolve()
          : new Promise<void>((r) => {
              state.wake = r;
            }),
      digest: () => {
        if (failure) return Promise.reject(failure);
        flush();
        return new Promise<string>((resolve, rej) => {
          reject = rej;
          state.done = (hex) => resolve(`${alg}:${hex}`);
          w.postMessage({ t: 'e', id });
        });
      },
      cancel: () => {
        if (!this.#jobs.delete(id)) return;
        w.postMessage({ t: 'c', id });
      },
    };
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    await w?.terminate();
  }
}
