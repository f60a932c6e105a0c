/**
 * `SpanInflater`: checks and inflates gzip spans on one worker thread (span-inflate-worker.ts), so the
 * Node main thread, which answers every FUSE operation, does not stall for the few milliseconds each 1 MiB
 * span takes to hash and inflate while a reader waits on its next op. A layer registers its zTOC's zinfo
 * blob once (copied to the worker, decoded there); `inflate` sends one buffer of adjacent compressed spans
 * (transferred, so the caller must not use it afterwards) and resolves with each span's outcome. If the
 * worker cannot start or dies, every pending and later call rejects and callers fall back to inflating
 * on their own thread. The worker is unref'd: it never keeps a process alive.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { InflateOutcome, InflatePart, InflateReply, InflateRequest } from './span-inflate-worker.js';

export type { InflateOutcome, InflatePart } from './span-inflate-worker.js';

function workerUrl(): URL {
  // Under tsx the sources are .ts; built output is .js beside this file.
  return new URL(import.meta.url.endsWith('.ts') ? './span-inflate-worker.ts' : './span-inflate-worker.js', import.meta.url);
}

function startWorker(): Worker {
  const url = workerUrl();
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  // Node 20 gives worker threads none of the parent's --import hooks: register tsx's CommonJS hook here.
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(url.pathname)});`, { eval: true });
}

export class SpanInflater {
  #worker: Worker | undefined;
  #failed: Error | undefined;
  #nextJob = 0;
  #nextKey = 0;
  readonly #pending = new Map<number, { resolve: (o: InflateOutcome[]) => void; reject: (e: Error) => void }>();
  readonly #keys = new WeakMap<object, number>();

  /** Starts the worker now (else at the first `inflate`), e.g. while other start-up work runs. */
  warm(): void {
    this.#get();
  }

  #get(): Worker | undefined {
    if (this.#failed !== undefined) return undefined;
    if (this.#worker !== undefined) return this.#worker;
    try {
      const w = startWorker();
      w.unref();
      w.on('message', (r: InflateReply) => {
        const p = this.#pending.get(r.job);
        this.#pending.delete(r.job);
        p?.resolve(r.outcomes);
      });
      const fail = (err: Error): void => {
        this.#failed = err;
        this.#worker = undefined;
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => fail(new Error(`span inflate worker exited with ${code}`)));
      this.#worker = w;
      return w;
    } catch (err) {
      this.#failed = err as Error;
      return undefined;
    }
  }

  /**
   * Checks and inflates the spans `parts` of `buf` (whose ArrayBuffer is transferred) for the layer
   * identified by `layer` (any object, e.g. its zTOC reader), whose zinfo blob `zinfo()` gives once. With
   * `file`, good spans are written there at their parts' `outOffset` and come back without `data`.
   */
  inflate(layer: object, zinfo: () => Uint8Array, buf: Uint8Array, parts: InflatePart[], file?: string): Promise<InflateOutcome[]> {
    const w = this.#get();
    if (w === undefined) return Promise.reject(this.#failed ?? new Error('span inflate worker unavailable'));
    let key = this.#keys.get(layer);
    if (key === undefined) {
      key = this.#nextKey++;
      this.#keys.set(layer, key);
      const blob = zinfo().slice();
      w.postMessage({ type: 'layer', key, zinfo: blob } satisfies InflateRequest, [blob.buffer as ArrayBuffer]);
    }
    const job = this.#nextJob++;
    // Only a buffer that is all of its ArrayBuffer is transferred; a view into a larger one is copied.
    const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
    const send = whole ? buf : buf.slice();
    return new Promise<InflateOutcome[]>((resolve, reject) => {
      this.#pending.set(job, { resolve, reject });
      w.postMessage({ type: 'job', job, key, buf: send, parts, file } satisfies InflateRequest, [send.buffer as ArrayBuffer]);
    });
  }

  /** Forgets a layer's checkpoints in the worker. */
  drop(layer: object): void {
    const key = this.#keys.get(layer);
    if (key === undefined) return;
    this.#keys.delete(layer);
    this.#worker?.postMessage({ type: 'drop', key } satisfies InflateRequest);
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#failed ??= new Error('span inflater closed');
    this.#worker = undefined;
    if (w !== undefined) await w.terminate();
  }
}
