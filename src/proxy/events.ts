/**
 * Events the proxy core publishes (STYLE.md §11): index jobs, layer outcomes, cache hits, upstream calls.
 * Published on a `node:diagnostics_channel` channel, so metrics (`metrics.ts`) and tests subscribe
 * without the core knowing about either.
 */
import diagnostics_channel from 'node:diagnostics_channel';

export type ProxyEvent =
  | { type: 'image-indexed'; upstream: string; repo: string; digest: string; ms: number; indexedLayers: number }
  | { type: 'image-failed'; upstream: string; repo: string; digest: string; ms: number; code: string }
  | { type: 'layer-indexed'; status: 'indexed' | 'skipped'; ms: number; bytes: number }
  | { type: 'layer-cache'; hit: boolean }
  | { type: 'soci-result'; hit: boolean }
  | { type: 'upstream'; upstream: string; op: 'manifest' | 'blob' | 'tags'; status: number; ms: number }
  | { type: 'bytes-served'; kind: 'upstream-blob' | 'cached-blob' | 'synthesized'; bytes: number }
  | { type: 'request'; route: 'manifest' | 'blob' | 'tags' | 'referrers' | 'other'; method: string; status: number; ms: number };

export const PROXY_CHANNEL = 'soci-proxy:proxy';

export interface ProxyEvents {
  publish(e: ProxyEvent): void;
}

export function channelEvents(name = PROXY_CHANNEL): ProxyEvents {
  const ch = diagnostics_channel.channel(name);
  return { publish: (e) => { if (ch.hasSubscribers) ch.publish(e); } };
}
