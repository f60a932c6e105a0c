/**
 * Worker-thread side of `IndexerPool`: runs one `LayerIndexer` per job id over the batches of blob bytes
 * the main thread transfers, and replies with the result or a plain error record.
 *
 * Each batch is acknowledged once it is indexed (backpressure), and the ack transfers the batch back with
 * the checkpoints placed up to its end and whether the newest one may still be dropped, so the main thread
 * can hash a gzip layer's span digests from it (`SpanDigester`) and reuse the buffer for a later batch.
 * The span hashing is shared: each new span goes to the main thread when batches are queued behind the
 * one being indexed (this worker is the slower side) or the main thread has finished reading, as a shared
 * `progress` array says; else the worker hashes it itself from the batch before handing it back. The
 * ack says which. At the end of a gzip layer the worker checks the stream, asks for the main thread's
 * digests (`spans`, the count) and encodes the zTOC when they come (`digests`).
 */
import { parentPort } from 'node:worker_threads';
import { errorCode, isSkip } from '../oci/errors.js';
import { LayerIndexer, type IndexLayerOptions, type PendingZtoc } from './layer-indexer.js';
import { SpanDigester, mergeSpanDigests } from './gzip/index.js';

type Msg =
  | { type: 'start'; id: number; opts: IndexLayerOptions; externalSpans: boolean; progress: Int32Array }
  | { type: 'chunk'; id: number; buf: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'digests'; id: number; digests: Array<string | undefined> }
  | { type: 'abort'; id: number };

interface Job {
  indexer: LayerIndexer;
  /** Checkpoints placed since the last ack, as flat (in, bits, 1 when the main thread hashes its span) triples. */
  cps: number[];
  /** Batches indexed, including the one being indexed. */
  batches: number;
  /** Written by the main thread: [batches posted, 1 once the read is over]. */
  progress: Int32Array;
  /** The spans this worker hashes (undefined when the spans are not external). */
  digester: SpanDigester | undefined;
  pending: PendingZtoc | undefined;
  mine: Array<string | undefined>;
}

const port = parentPort;
if (!port) throw new Error('worker.ts must run in a worker thread');

const jobs = new Map<number, Job>();

function fail(id: number, err: unknown): void {
  jobs.delete(id);
  if (isSkip(err)) {
    port!.postMessage({ type: 'result', id, result: { status: 'skipped', code: err.code, reason: err.message } });
  } else {
    const e = err instanceof Error ? err : new Error(String(err));
    const rec = e as Error & { offset?: number; where?: string };
    port!.postMessage({ type: 'error', id, error: { name: e.name, code: errorCode(e), message: e.message, offset: rec.offset, where: rec.where } });
  }
}

/** Batches queued behind the current one at which the main thread takes the next span. */
const BACKLOG_TO_MAIN = 2;

/** Who hashes the span that starts now: the main thread when this worker is behind or the read is over. */
function spanToMain(job: Job): boolean {
  return Atomics.load(job.progress, 1) === 1 || Atomics.load(job.progress, 0) - job.batches >= BACKLOG_TO_MAIN;
}

function start(id: number, opts: IndexLayerOptions, externalSpans: boolean, progress: Int32Array): void {
  const cps: number[] = [];
  const onCheckpoint = (cp: { in: number; bits: number }): void => { cps.push(cp.in, cp.bits, spanToMain(job) ? 1 : 0); };
  const indexer = new LayerIndexer(opts, externalSpans ? { onCheckpoint } : undefined);
  const job: Job = { indexer, cps, batches: 0, progress, digester: indexer.externalSpans ? new SpanDigester() : undefined, pending: undefined, mine: [] };
  jobs.set(id, job);
}

/** This worker's share of the span hashing for the batch just indexed. */
function hashOwnSpans(job: Job, buf: Uint8Array, cps: number[]): void {
  if (!job.digester) return;
  const mine: Array<{ in: number; bits: number; mine: boolean }> = [];
  for (let i = 0; i < cps.length; i += 3) mine.push({ in: cps[i]!, bits: cps[i + 1]!, mine: cps[i + 2] === 0 });
  job.digester.advance(buf, mine, job.indexer.lastCheckpointOpen);
}

port.on('message', (msg: Msg) => {
  switch (msg.type) {
    case 'start':
      try {
        start(msg.id, msg.opts, msg.externalSpans, msg.progress);
      } catch (err) {
        fail(msg.id, err);
      }
      return;
    case 'chunk': {
      const job = jobs.get(msg.id);
      if (job) {
        try {
          job.batches++;
          job.indexer.write(msg.buf);
          hashOwnSpans(job, msg.buf, job.cps);
        } catch (err) {
          // Fail fast: the main thread stops reading the source as soon as it hears of it.
          fail(msg.id, err);
        }
      }
      // The batch goes back with the ack; after a failure the main thread only reuses the buffer.
      const ok = job !== undefined && jobs.has(msg.id);
      const cps = ok ? job.cps.splice(0) : [];
      port.postMessage({ type: 'ack', id: msg.id, buf: msg.buf, cps, open: ok && job.indexer.lastCheckpointOpen }, [msg.buf.buffer as ArrayBuffer]);
      return;
    }
    case 'end': {
      const job = jobs.get(msg.id);
      if (!job) return;
      try {
        const r = job.indexer.externalSpans ? job.indexer.endStream() : job.indexer.end();
        if (r.status === 'pending') {
          job.pending = r;
          job.mine = job.digester!.finish(r.spanCount);
          port.postMessage({ type: 'spans', id: msg.id, count: r.spanCount });
          return;
        }
        jobs.delete(msg.id);
        port.postMessage({ type: 'result', id: msg.id, result: r });
      } catch (err) {
        fail(msg.id, err);
      }
      return;
    }
    case 'digests': {
      const job = jobs.get(msg.id);
      if (!job?.pending) return;
      try {
        const r = job.pending.finish(mergeSpanDigests(job.mine, msg.digests));
        jobs.delete(msg.id);
        port.postMessage({ type: 'result', id: msg.id, result: r });
      } catch (err) {
        fail(msg.id, err);
      }
      return;
    }
    case 'abort':
      jobs.delete(msg.id);
      return;
  }
});
