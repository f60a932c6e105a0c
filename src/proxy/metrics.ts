/**
 * Prometheus metrics for the proxy (prom-client), fed only by subscribing to the events the core and the
 * cache publish on diagnostics channels; nothing in the core calls into this file. Labels carry no
 * repository names, tags or credentials (bounded cardinality, nothing secret).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PROXY_CHANNEL, type ProxyEvent } from './events.js';

export interface ProxyMetrics {
  registry: Registry;
  render(): Promise<{ contentType: string; body: string }>;
  close(): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean; cacheChannel?: string } = {}): ProxyMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'soci_proxy_' });
  const requests = new Counter({ name: 'soci_proxy_requests_total', help: 'Requests answered, by route, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] });
  const requestSeconds = new Histogram({ name: 'soci_proxy_request_duration_seconds', help: 'Time to response headers, by route', labelNames: ['route'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers: [registry] });
  const upstreamSeconds = new Histogram({ name: 'soci_proxy_upstream_duration_seconds', help: 'Upstream request latency, by upstream and operation', labelNames: ['upstream', 'op', 'status'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [registry] });
  const bytes = new Counter({ name: 'soci_proxy_bytes_served_total', help: 'Blob bytes sent to clients, by kind', labelNames: ['kind'], registers: [registry] });
  const jobs = new Counter({ name: 'soci_proxy_index_jobs_total', help: 'Image index builds, by outcome', labelNames: ['outcome'], registers: [registry] });
  const jobSeconds = new Histogram({ name: 'soci_proxy_index_job_duration_seconds', help: 'Duration of image index builds', buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900], registers: [registry] });
  const layers = new Counter({ name: 'soci_proxy_layers_indexed_total', help: 'Layers indexed (zTOC built) or skipped', labelNames: ['status'], registers: [registry] });
  const layerSeconds = new Histogram({ name: 'soci_proxy_layer_index_duration_seconds', help: 'Time to index one layer', buckets: [0.05, 0.1, 0.5, 1, 5, 10, 30, 120], registers: [registry] });
  const cacheHits = new Counter({ name: 'soci_proxy_cache_lookups_total', help: 'Lookups of derived artifacts, by kind and result', labelNames: ['kind', 'result'], registers: [registry] });
  const cacheOps = new Counter({ name: 'soci_proxy_cache_tier_ops_total', help: 'Cache tier operations, by tier, op and outcome', labelNames: ['tier', 'op', 'outcome'], registers: [registry] });

  const onProxy = (msg: unknown): void => {
    const e = msg as ProxyEvent;
    switch (e.type) {
      case 'request':
        requests.inc({ route: e.route, method: e.method, status: String(e.status) });
        requestSeconds.observe({ route: e.route }, e.ms / 1000);
        break;
      case 'upstream':
        upstreamSeconds.observe({ upstream: e.upstream, op: e.op, status: String(e.status) }, e.ms / 1000);
        break;
      case 'bytes-served':
        bytes.inc({ kind: e.kind }, e.bytes);
        break;
      case 'image-indexed':
        jobs.inc({ outcome: 'built' });
        jobSeconds.observe(e.ms / 1000);
        break;
      case 'image-failed':
        jobs.inc({ outcome: 'failed' });
        jobSeconds.observe(e.ms / 1000);
        break;
      case 'layer-indexed':
        layers.inc({ status: e.status });
        layerSeconds.observe(e.ms / 1000);
        break;
      case 'layer-cache':
        cacheHits.inc({ kind: 'layer', result: e.hit ? 'hit' : 'miss' });
        break;
      case 'soci-result':
        cacheHits.inc({ kind: 'image', result: e.hit ? 'hit' : 'miss' });
        break;
    }
  };
  const onCache = (msg: unknown): void => {
    const e = msg as { tier?: string; op?: string; hit?: boolean; outcome?: string; type?: string };
    cacheOps.inc({ tier: String(e.tier ?? 'unknown'), op: String(e.op ?? e.type ?? 'op'), outcome: String(e.outcome ?? (e.hit === undefined ? 'ok' : e.hit ? 'hit' : 'miss')) });
  };
  diagnostics_channel.subscribe(PROXY_CHANNEL, onProxy);
  const cacheChannel = opts.cacheChannel ?? 'soci-proxy:cache';
  diagnostics_channel.subscribe(cacheChannel, onCache);
  return {
    registry,
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    close: () => {
      diagnostics_channel.unsubscribe(PROXY_CHANNEL, onProxy);
      diagnostics_channel.unsubscribe(cacheChannel, onCache);
    },
  };
}
