/**
 * The snapshotter's events and counters. Every span fetch (on demand, prefetch or background, with bytes
 * and latency), every failed read, every resolved image and every mount/unmount is published on the
 * diagnostics channel `soci-proxy:snapshotter` (subscribers: logs, tests, a metrics exporter) and summed
 * in a `SnapshotterStats` that the mount command logs at unmount. FUSE reads and read errors are counted
 * here because they reach the core through `LayerContent`; the other FUSE ops are answered from the tree
 * inside `../fs` and are not counted.
 */
import { channel } from 'node:diagnostics_channel';

export const SNAPSHOTTER_CHANNEL = 'soci-proxy:snapshotter';

export type FetchKind = 'demand' | 'prefetch' | 'background';

export type SnapshotterEvent =
  | { type: 'span'; layerDigest: string; spanId: number; kind: FetchKind; compressedBytes: number; ms: number }
  | { type: 'span-error'; layerDigest: string; spanId: number; kind: FetchKind; error: string }
  | { type: 'read'; layerDigest: string; bytes: number; ms: number }
  | { type: 'read-error'; layerDigest: string; path: string; error: string }
  | { type: 'resolved'; manifestDigest: string; sociIndexDigest?: string | undefined; ztocs: number; reason?: string | undefined }
  | { type: 'layer'; layerDigest: string; mode: 'lazy' | 'unpacked'; dir: string; ms: number; bytes?: number }
  | { type: 'background-done'; layerDigest: string };

export interface SnapshotterStats {
  spans: Record<FetchKind, { count: number; bytes: number; ms: number }>;
  spanErrors: number;
  /** Span requests answered from the memory or disk cache (summed from the span fetchers). */
  cacheHits: { memory: number; disk: number };
  /**
   * `reads`/`readBytes`/`readErrors`: reads that reached JS. `kernel`: what the native FUSE server saw, over
   * every lazy mount (requests by kind, reads answered in C from the span file vs handed to JS, files pushed
   * into the page cache by the list prefetch); all zero under fuse-native.
   */
  fuse: { reads: number; readBytes: number; readErrors: number; kernel: FuseKernelStats };
  layers: { lazy: number; unpacked: number; unpackedBytes: number };
}

export interface FuseKernelStats {
  ops: Record<string, number>;
  fastReads: number;
  slowReads: number;
  pushed: number;
}

export function emptyKernelStats(): FuseKernelStats {
  return { ops: {}, fastReads: 0, slowReads: 0, pushed: 0 };
}

/** Adds `b` into `a`. */
export function addKernelStats(a: FuseKernelStats, b: { ops: Record<string, number>; fastReads: number; slowReads: number; pushed: number }): FuseKernelStats {
  for (const [k, v] of Object.entries(b.ops)) a.ops[k] = (a.ops[k] ?? 0) + v;
  a.fastReads += b.fastReads;
  a.slowReads += b.slowReads;
  a.pushed += b.pushed;
  return a;
}

export function emptyStats(): SnapshotterStats {
  return {
    spans: { demand: { count: 0, bytes: 0, ms: 0 }, prefetch: { count: 0, bytes: 0, ms: 0 }, background: { count: 0, bytes: 0, ms: 0 } },
    spanErrors: 0,
    cacheHits: { memory: 0, disk: 0 },
    fuse: { reads: 0, readBytes: 0, readErrors: 0, kernel: emptyKernelStats() },
    layers: { lazy: 0, unpacked: 0, unpackedBytes: 0 },
  };
}

/** Publishes events and keeps the running totals. */
export class SnapshotterMetrics {
  readonly stats = emptyStats();
  readonly #ch = channel(SNAPSHOTTER_CHANNEL);

  emit(e: SnapshotterEvent): void {
    const s = this.stats;
    switch (e.type) {
      case 'span': {
        const k = s.spans[e.kind];
        k.count++;
        k.bytes += e.compressedBytes;
        k.ms += e.ms;
        break;
      }
      case 'span-error':
        s.spanErrors++;
        break;
      case 'read':
        s.fuse.reads++;
        s.fuse.readBytes += e.bytes;
        break;
      case 'read-error':
        s.fuse.readErrors++;
        break;
      case 'layer':
        if (e.mode === 'lazy') s.layers.lazy++;
        else {
          s.layers.unpacked++;
          s.layers.unpackedBytes += e.bytes ?? 0;
        }
        break;
      default:
        break;
    }
    if (this.#ch.hasSubscribers) this.#ch.publish(e);
  }
}
