/**
 * Worker-thread side of `SpanInflater`: checks fetched compressed spans against their digests and inflates
 * them from their checkpoints, off the thread that answers FUSE. A layer's zinfo blob arrives once
 * (`layer`) and is decoded here; each `job` is one buffer of compressed bytes holding one or more adjacent
 * spans, and the answer gives each span's inflated bytes (transferred back) or why it has none. A job
 * that names a `file` (a layer's sparse span file, span-file.ts) has each good span written there at its
 * `outOffset` instead, so megabytes of inflated bytes never cross back to the main thread; the answer then
 * only says which spans were written, and the main thread marks them present.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync, constants } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { Checkpoint } from '../../indexer/types.js';
import { decodeZinfoBlob, inflateSpan, inflateSpanInto } from '../../indexer/gzip/index.js';

export interface InflatePart {
  id: number;
  /** The span's bytes within the job's buffer. */
  from: number;
  to: number;
  /** `sha256:<hex>` the compressed bytes must have. */
  digest: string;
  /** Inflated length. */
  length: number;
  /** Where the span goes in the job's `file`. */
  outOffset?: number;
}

export type InflateRequest =
  | { type: 'layer'; key: number; zinfo: Uint8Array }
  | { type: 'drop'; key: number }
  | { type: 'job'; job: number; key: number; buf: Uint8Array; parts: InflatePart[]; file?: string | undefined };

/** `data` is absent when the span was written to the job's file. */
export type InflateOutcome = { ok: true; data?: Uint8Array } | { ok: false; reason: 'digest' | 'inflate' | 'write'; message: string };

export interface InflateReply {
  job: number;
  outcomes: InflateOutcome[];
}

const layers = new Map<number, readonly Checkpoint[]>();

/** Grown on demand and reused: spans written to a file never need a buffer of their own. */
let scratch = new Uint8Array(0);

/**
 * Checks and inflates one span. Into `scratch` when `reuse` (the bytes are written out before the next span
 * is inflated), else into a new buffer that is transferred back.
 */
function one(checkpoints: readonly Checkpoint[] | undefined, buf: Uint8Array, p: InflatePart, reuse: boolean): InflateOutcome {
  const bytes = buf.subarray(p.from, p.to);
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== p.digest) return { ok: false, reason: 'digest', message: `span ${p.id} does not match ${p.digest}` };
  const cp = checkpoints?.[p.id];
  if (cp === undefined) return { ok: false, reason: 'inflate', message: `no checkpoint for span ${p.id}` };
  try {
    if (!reuse) return { ok: true, data: inflateSpan(cp, bytes, p.length) };
    if (scratch.length < p.length) scratch = new Uint8Array(p.length);
    return { ok: true, data: inflateSpanInto(cp, bytes, scratch.subarray(0, p.length)) };
  } catch (err) {
    return { ok: false, reason: 'inflate', message: (err as Error).message };
  }
}

/** Produces each part's span and writes it to `file` at its `outOffset`, one span at a time. */
function writeSpans(file: string, parts: readonly InflatePart[], produce: (p: InflatePart) => InflateOutcome): InflateOutcome[] {
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY);
  } catch (err) {
    return parts.map((p) => {
      const o = produce(p);
      return o.ok ? { ok: false, reason: 'write', message: (err as Error).message } : o;
    });
  }
  try {
    return parts.map((p) => {
      const o = produce(p);
      if (!o.ok || o.data === undefined || p.outOffset === undefined) return o;
      try {
        for (let done = 0; done < o.data.length;) {
          const n = writeSync(fd, o.data, done, o.data.length - done, p.outOffset + done);
          if (n <= 0) throw new Error('short write');
          done += n;
        }
        return { ok: true };
      } catch (err) {
        return { ok: false, reason: 'write', message: (err as Error).message };
      }
    });
  } finally {
    closeSync(fd);
  }
}

const port = parentPort;
port?.on('message', (m: InflateRequest) => {
  if (m.type === 'layer') {
    layers.set(m.key, decodeZinfoBlob(m.zinfo).checkpoints);
  } else if (m.type === 'drop') {
    layers.delete(m.key);
  } else {
    const cps = layers.get(m.key);
    const outcomes = m.file === undefined
      ? m.parts.map((p) => one(cps, m.buf, p, false))
      : writeSpans(m.file, m.parts, (p) => one(cps, m.buf, p, true));
    const transfer = outcomes.flatMap((o) => (o.ok && o.data !== undefined ? [o.data.buffer as ArrayBuffer] : []));
    port.postMessage({ job: m.job, outcomes } satisfies InflateReply, transfer);
  }
});
