/**
 * Worker-thread side of `SpanInflater`: checks fetched compressed spans against their digests and inflates
 * them from their checkpoints, off the thread that answers FUSE. A layer's zinfo blob arrives once
 * (`layer`) and is decoded here; each `job` is one buffer of compressed bytes holding one or more adjacent
 * spans, and the answer gives each span's inflated bytes (transferred back) or why it has none.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { Checkpoint } from '../../indexer/types.js';
import { decodeZinfoBlob, inflateSpan } from '../../indexer/gzip/index.js';

export interface InflatePart {
  id: number;
  /** The span's bytes within the job's buffer. */
  from: number;
  to: number;
  /** `sha256:<hex>` the compressed bytes must have. */
  digest: string;
  /** Inflated length. */
  length: number;
}

export type InflateRequest =
  | { type: 'layer'; key: number; zinfo: Uint8Array }
  | { type: 'drop'; key: number }
  | { type: 'job'; job: number; key: number; buf: Uint8Array; parts: InflatePart[] };

export type InflateOutcome = { ok: true; data: Uint8Array } | { ok: false; reason: 'digest' | 'inflate'; message: string };

export interface InflateReply {
  job: number;
  outcomes: InflateOutcome[];
}

const layers = new Map<number, readonly Checkpoint[]>();

function one(checkpoints: readonly Checkpoint[] | undefined, buf: Uint8Array, p: InflatePart): InflateOutcome {
  const bytes = buf.subarray(p.from, p.to);
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== p.digest) return { ok: false, reason: 'digest', message: `span ${p.id} does not match ${p.digest}` };
  const cp = checkpoints?.[p.id];
  if (cp === undefined) return { ok: false, reason: 'inflate', message: `no checkpoint for span ${p.id}` };
  try {
    return { ok: true, data: inflateSpan(cp, bytes, p.length) };
  } catch (err) {
    return { ok: false, reason: 'inflate', message: (err as Error).message };
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
    const outcomes = m.parts.map((p) => one(cps, m.buf, p));
    const transfer = outcomes.flatMap((o) => (o.ok ? [o.data.buffer as ArrayBuffer] : []));
    port.postMessage({ job: m.job, outcomes } satisfies InflateReply, transfer);
  }
});
