/**
 * `SpanInflater`: checks and inflates gzip spans on a small pool of worker threads
 * (span-inflate-worker.ts), so the Node main thread, which answers every FUSE operation, does not stall for
 * the milliseconds each span takes to hash and inflate, and a whole-layer fill uses every core (inflating
 * is the fill's bottleneck: one core inflates about 250 MB/s here, a layer read cold is bound by it). A
 * layer registers its zTOC's zinfo blob once per worker (copied, decoded there); `inflate` takes one
 * buffer of adjacent compressed spans (the caller must not use it afterwards) and splits it into one job
 * per span: a queue in this thread hands each idle worker the next job, so adjacent spans inflate in
 * parallel and complete roughly in order, `onEach` reports each span as it lands, and `hurry` moves a
 * span a reader waits on to the head of the queue. If a worker cannot start or dies, its jobs and every
 * later call reject and callers fall back to inflating on their own thread. Workers are unref'd: they
 * never keep a process alive.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
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

export interface SpanInflaterOptions {
  /** Worker threads (default: the machine's available parallelism, at most 4). */
  threads?: number;
}

/** One span waiting for, or on, a worker. */
interface Job {
  layer: object;
  key: number;
  zinfo: () => Uint8Array;
  bytes: Uint8Array;
  part: InflatePart;
  file: string | undefined;
  done: (o: InflateOutcome) => void;
  fail: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Layer keys whose zinfo this worker has. */
  layers: Set<number>;
  busy: Job | undefined;
  job: number;
}

export class SpanInflater {
  readonly threads: number;
  readonly #slots: Slot[] = [];
  #failed: Error | undefined;
  #nextJob = 0;
  #nextKey = 0;
  #queue: Job[] = [];
  /** Spans a reader waits on that are not queued yet, by layer: they go to the head of the queue. */
  readonly #urgent = new WeakMap<object, Set<number>>();
  readonly #keys = new WeakMap<object, number>();

  constructor(opts: SpanInflaterOptions = {}) {
    this.threads = Math.max(1, Math.floor(opts.threads ?? Math.min(4, availableParallelism())));
  }

  /** Starts the workers now (else at the first `inflate`), e.g. while other start-up work runs. */
  warm(): void {
    this.#start();
  }

  #start(): boolean {
    if (this.#failed !== undefined) return false;
    try {
      while (this.#slots.length < this.threads) this.#slots.push(this.#spawn());
      return true;
    } catch (err) {
      this.#fail(err as Error);
      return false;
    }
  }

  #spawn(): Slot {
    const w = startWorker();
    w.unref();
    const slot: Slot = { worker: w, layers: new Set(), busy: undefined, job: -1 };
    w.on('message', (r: InflateReply) => {
      const j = slot.busy;
      if (j === undefined || r.job !== slot.job) return;
      slot.busy = undefined;
      const o = r.outcomes[0];
      if (o === undefined) j.fail(new Error(`span ${j.part.id}: empty answer from the inflate worker`));
      else j.done(o);
      this.#pump();
    });
    const fail = (err: Error): void => this.#fail(err);
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`span inflate worker exited with ${code}`)));
    return slot;
  }

  /** A worker failed (or the pool closed): every queued and running job rejects, and so does every later call. */
  #fail(err: Error): void {
    this.#failed ??= err;
    const jobs = [...this.#queue, ...this.#slots.flatMap((s) => (s.busy === undefined ? [] : [s.busy]))];
    this.#queue = [];
    const slots = this.#slots.splice(0);
    for (const s of slots) s.busy = undefined;
    for (const j of jobs) j.fail(this.#failed);
    for (const s of slots) void s.worker.terminate().catch(() => undefined);
  }

  /** Hands queued jobs to idle workers. */
  #pump(): void {
    for (const slot of this.#slots) {
      if (slot.busy !== undefined) continue;
      const j = this.#queue.shift();
      if (j === undefined) return;
      slot.busy = j;
      slot.job = this.#nextJob++;
      if (!slot.layers.has(j.key)) {
        slot.layers.add(j.key);
        const blob = j.zinfo().slice();
        slot.worker.postMessage({ type: 'layer', key: j.key, zinfo: blob } satisfies InflateRequest, [blob.buffer as ArrayBuffer]);
      }
      const part: InflatePart = { ...j.part, from: 0, to: j.bytes.length };
      const transfer = j.bytes.buffer instanceof SharedArrayBuffer ? [] : [j.bytes.buffer];
      slot.worker.postMessage({ type: 'job', job: slot.job, key: j.key, buf: j.bytes, parts: [part], file: j.file } satisfies InflateRequest, transfer);
    }
  }

  /**
   * Checks and inflates the spans `parts` of `buf` for the layer identified by `layer` (any object, e.g. its
   * zTOC reader), whose zinfo blob `zinfo()` gives once per worker. With `file`, a good span with an
   * `outOffset` is written there and comes back without `data`. `onEach(i, outcome)` reports part `i` as
   * soon as it is done; the promise resolves with every outcome, or rejects (nothing reported after) when
   * the workers fail. `buf` is consumed.
   */
  inflate(layer: object, zinfo: () => Uint8Array, buf: Uint8Array, parts: InflatePart[], file?: string, onEach?: (i: number, o: InflateOutcome) => void): Promise<InflateOutcome[]> {
    if (!this.#start()) return Promise.reject(this.#failed ?? new Error('span inflate workers unavailable'));
    let key = this.#keys.get(layer);
    if (key === undefined) {
      key = this.#nextKey++;
      this.#keys.set(layer, key);
    }
    const k = key;
    return new Promise<InflateOutcome[]>((resolve, reject) => {
      const out: InflateOutcome[] = new Array<InflateOutcome>(parts.length);
      let left = parts.length;
      let failed = false;
      if (left === 0) return resolve(out);
      const urgent = this.#urgent.get(layer);
      const shared = buf.buffer instanceof SharedArrayBuffer;
      parts.forEach((part, i) => {
        const first = urgent?.delete(part.id) === true;
        this.#queue[first ? 'unshift' : 'push']({
          layer, key: k, zinfo, part, file,
          // each span goes to whichever worker is free: a view of shared memory, else a copy of its own
          bytes: shared ? buf.subarray(part.from, part.to) : buf.slice(part.from, part.to),
          done: (o) => {
            if (failed) return;
            out[i] = o;
            onEach?.(i, o);
            if (--left === 0) resolve(out);
          },
          fail: (e) => {
            if (failed) return;
            failed = true;
            reject(e);
          },
        });
      });
      this.#pump();
    });
  }

  /**
   * Moves the job of span `id` of `layer` to the head of the queue (a reader waits on it); when it is not
   * queued yet (still being fetched), it goes to the head once it is. Ignored for a span already on a worker.
   */
  hurry(layer: object, id: number): void {
    const i = this.#queue.findIndex((j) => j.layer === layer && j.part.id === id);
    if (i < 0 && !this.#slots.some((s) => s.busy?.layer === layer && s.busy.part.id === id)) {
      let set = this.#urgent.get(layer);
      if (set === undefined) this.#urgent.set(layer, (set = new Set()));
      if (set.size < 1024) set.add(id);
    }
    if (i <= 0) return;
    const [j] = this.#queue.splice(i, 1);
    this.#queue.unshift(j as Job);
  }

  /** Forgets a layer's checkpoints in the workers. */
  drop(layer: object): void {
    const key = this.#keys.get(layer);
    if (key === undefined) return;
    this.#keys.delete(layer);
    for (const s of this.#slots) {
      if (s.layers.delete(key)) s.worker.postMessage({ type: 'drop', key } satisfies InflateRequest);
    }
  }

  async close(): Promise<void> {
    const workers = this.#slots.map((s) => s.worker);
    this.#fail(new Error('span inflater closed'));
    await Promise.allSettled(workers.map((w) => w.terminate()));
  }
}
