/**
 * Cache events on `node:diagnostics_channel` (STYLE.md §11): the cache publishes, metrics and tests
 * subscribe (`diagnostics_channel.subscribe(CACHE_CHANNEL, fn)`); nothing here knows prom-client or a
 * logger. `op` is 'get' (with `hit`), 'put', 'delete', 'evict', 'corrupt' (damaged bytes found and
 * dropped), 'unavailable' / 'available' (a Redis connection went away or came back: the composition
 * root should log a warning on 'unavailable'), 'error' (a tier failed an operation and was skipped), and
 * 'flight' (single-flight outcomes: `detail` is 'leader', 'joined', 'remote-wait', 'takeover',
 * 'degraded'). Publishing costs nothing when nobody subscribes.
 */
import diagnosticsChannel from 'node:diagnostics_channel';

export const CACHE_CHANNEL = 'soci-proxy:cache';

export type CacheOp = 'get' | 'put' | 'delete' | 'evict' | 'corrupt' | 'unavailable' | 'available' | 'error' | 'flight';

export interface CacheEvent {
  op: CacheOp;
  /** 'memory', 'disk', 'redis', 'meta-…', 'flight'. */
  tier: string;
  hit?: boolean;
  bytes?: number;
  key?: string;
  detail?: string;
  error?: unknown;
}

const channel = diagnosticsChannel.channel(CACHE_CHANNEL);

export function publish(event: CacheEvent): void {
  if (channel.hasSubscribers) channel.publish(event);
}

/** Subscribes `fn` to cache events; returns the unsubscribe function. */
export function onCacheEvent(fn: (event: CacheEvent) => void): () => void {
  const handler = (msg: unknown) => fn(msg as CacheEvent);
  diagnosticsChannel.subscribe(CACHE_CHANNEL, handler);
  return () => void diagnosticsChannel.unsubscribe(CACHE_CHANNEL, handler);
}
