/**
 * Worker-thread side of `IndexerPool`: runs one `LayerIndexer` per job id over the chunks the main thread
 * transfers, acknowledges each chunk (backpressure), and replies with the result or a plain error record.
 */
import { parentPort } from 'node:worker_threads';
import { errorCode, isSkip } from '../oci/errors.js';
import { LayerIndexer, type IndexLayerOptions } from './layer-indexer.js';

type Msg =
  | { type: 'start'; id: number; opts: IndexLayerOptions }
  | { type: 'chunk'; id: number; buf: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

const port = parentPort;
if (!port) throw new Error('worker.ts must run in a worker thread');

const jobs = new Map<number, LayerIndexer>();

function fail(id: number, err: unknown): void {
  if (isSkip(err)) {
    port!.postMessage({ type: 'result', id, result: { status: 'skipped', code: err.code, reason: err.message } });
  } else {
    const e = err instanceof Error ? err : new Error(String(err));
    const rec = e as Error & { offset?: number; where?: string };
    port!.postMessage({ type: 'error', id, error: { name: e.name, code: errorCode(e), message: e.message, offset: rec.offset, where: rec.where } });
  }
}

port.on('message', (msg: Msg) => {
  switch (msg.type) {
    case 'start':
      try {
        jobs.set(msg.id, new LayerIndexer(msg.opts));
      } catch (err) {
        fail(msg.id, err);
      }
      return;
    case 'chunk': {
      const job = jobs.get(msg.id);
      port.postMessage({ type: 'ack', id: msg.id });
      if (!job) return;
      try {
        job.write(msg.buf);
      } catch (err) {
        // Fail fast: the main thread stops reading the source as soon as it hears of it.
        jobs.delete(msg.id);
        fail(msg.id, err);
      }
      return;
    }
    case 'end': {
      const job = jobs.get(msg.id);
      jobs.delete(msg.id);
      if (!job) return;
      try {
        port.postMessage({ type: 'result', id: msg.id, result: job.end() });
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
