/**
 * The proxy as a fetch function (a Hono app): routes of the OCI distribution API (pull side), health and
 * metrics. It has no transport: `main.ts` serves it with @hono/node-server, tests call `app.request()` or
 * serve it on loopback. Collaborators come in as options (STYLE.md §9).
 *
 * Repository names contain slashes, so the resource routes are matched by regular expression on the
 * path; the first component may name a configured upstream (`/v2/docker.io/library/python/...`), and
 * containerd's mirror requests carry it as `?ns=`.
 */
import { Hono, type Context } from 'hono';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { OciError } from '../oci/errors.js';
import type { ArtifactCache, LayerIndexerPort, UpstreamRouter } from './contracts.js';
import { DEFAULT_PROXY_CONFIG, sociOptionsKey, type ProxyCoreConfig } from './config.js';
import { ArtifactRecords } from './artifacts.js';
import { AccessChecker } from './authz.js';
import type { BlobCache } from './blob-cache.js';
import { ManifestService } from './manifests.js';
import { BlobService } from './blobs.js';
import { indexLayerOnce, type SociJobDeps } from './soci-job.js';
import { isStreamedBlob, toWebStream, type StreamedBlob } from './streamed-blob.js';
import { channelEvents, type ProxyEvents } from './events.js';
import { ociErrorResponse } from './http-errors.js';
import { parseAccept } from './accept.js';
import { MediaType } from '../oci/media-types.js';
import { marshalIndex } from '../oci/go-json.js';

export interface ProxyAppOptions {
  router: UpstreamRouter;
  cache: ArtifactCache;
  indexer: LayerIndexerPort;
  logger: Logger;
  config?: Partial<ProxyCoreConfig>;
  events?: ProxyEvents;
  /** Prometheus exposition for GET /metrics. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Readiness beyond "the process is up" (e.g. the cache directory is writable). */
  ready?: () => Promise<boolean>;
  /** Image builds at once per job (layers in parallel). */
  layerConcurrency?: number;
  /**
   * Sends a streamed upstream blob. The composition root passes one that writes straight onto the Node
   * socket; the default (tests, other transports) answers with a web stream of the same bytes.
   */
  sendStreamed?: (c: Context<AppEnv>, s: StreamedBlob) => Response;
  /** Pull-through cache of whole upstream blobs (blob-cache.ts); absent: blobs always stream from upstream. */
  blobCache?: BlobCache;
}

export type AppEnv = { Variables: { log: Logger; reqId: string }; Bindings: { outgoing?: unknown } };

export interface ProxyApp {
  app: Hono<AppEnv>;
  /** Waits for running index jobs (graceful shutdown). */
  drain(): Promise<void>;
}

const NAME = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*';
const RE_MANIFEST = new RegExp(`^/v2/(${NAME})/manifests/([A-Za-z0-9_][A-Za-z0-9._-]{0,127}|[a-z0-9]+:[a-zA-Z0-9=_-]+)$`);
const RE_BLOB = new RegExp(`^/v2/(${NAME})/blobs/([^/]+)$`);
const RE_TAGS = new RegExp(`^/v2/(${NAME})/tags/list$`);
const RE_REFERRERS = new RegExp(`^/v2/(${NAME})/referrers/([^/]+)$`);
const RE_UPLOADS = new RegExp(`^/v2/(${NAME})/blobs/uploads/?.*$`);

export function createProxyApp(opts: ProxyAppOptions): ProxyApp {
  const config: ProxyCoreConfig = { ...DEFAULT_PROXY_CONFIG, ...opts.config, soci: { ...DEFAULT_PROXY_CONFIG.soci, ...opts.config?.soci } };
  const events = opts.events ?? channelEvents();
  const records = new ArtifactRecords(opts.cache, sociOptionsKey(config.soci));
  const access = new AccessChecker({ ttlMs: config.authzCacheMs });
  const job: SociJobDeps = {
    records,
    indexer: opts.indexer,
    soci: config.soci,
    logger: opts.logger,
    events,
    maxManifestBytes: config.maxManifestBytes,
    maxLayers: config.maxLayers,
    maxManifests: config.maxManifests,
    layerConcurrency: opts.layerConcurrency ?? 4,
    blobCache: opts.blobCache,
  };
  const manifests = new ManifestService({ records, access, config, events, job });
  const blobs = new BlobService({ records, access, events, rebuild: (upstream, repo, layer, creds) => indexLayerOnce(job, upstream, repo, layer, creds), blobCache: opts.blobCache });
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    const reqId = c.req.header('x-request-id')?.slice(0, 64) || randomUUID();
    const log = opts.logger.child({ reqId });
    c.set('log', log);
    c.set('reqId', reqId);
    const started = performance.now();
    await next();
    // A response already written to the socket (a streamed blob) carries its own X-Request-Id.
    if (!c.res.headers.has('x-hono-already-sent')) c.header('X-Request-Id', reqId);
    const path = new URL(c.req.url).pathname;
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') {
      const ms = performance.now() - started;
      const kind = /\/manifests\//.test(path) ? 'manifest' : /\/blobs\//.test(path) ? 'blob' : /\/tags\/list$/.test(path) ? 'tags' : /\/referrers\//.test(path) ? 'referrers' : 'other';
      events.publish({ type: 'request', route: kind, method: c.req.method, status: c.res.status, ms });
      log.info({ method: c.req.method, path, status: c.res.status, ms: Math.round(performance.now() - started) }, 'request');
    }
  });

  app.onError((err, c) => {
    const log = c.get('log') ?? opts.logger;
    if (!(err instanceof OciError)) log.error({ err: err.message, stack: err.stack }, 'unhandled error');
    else if (err.status >= 500) log.warn({ code: err.code, err: err.message }, 'upstream error');
    return ociErrorResponse(c, err);
  });

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => ((await (opts.ready?.() ?? Promise.resolve(true))) ? c.json({ status: 'ready' }) : c.json({ status: 'not ready' }, 503)));
  app.get('/metrics', async (c) => {
    if (!opts.metrics) return c.text('', 404);
    const m = await opts.metrics();
    return c.body(m.body, 200, { 'Content-Type': m.contentType });
  });

  app.get('/v2/', (c) => c.json({}, 200, { 'Docker-Distribution-API-Version': 'registry/2.0' }));
  app.get('/v2', (c) => c.json({}, 200, { 'Docker-Distribution-API-Version': 'registry/2.0' }));

  const route = (c: Context<AppEnv>, name: string): { upstream: import('./contracts.js').UpstreamRegistry; repo: string } => {
    const ns = new URL(c.req.url).searchParams.get('ns') ?? undefined;
    const r = opts.router.route(name, ns);
    if (!r) throw new OciError('NAME_UNKNOWN', `no configured upstream serves ${JSON.stringify(name)}`);
    return { upstream: r.upstream, repo: r.repository };
  };
  const credentials = (c: Context<AppEnv>): { authorization?: string } => {
    const a = c.req.header('authorization');
    return a ? { authorization: a } : {};
  };
  const method = (c: Context<AppEnv>): 'GET' | 'HEAD' => (c.req.method === 'HEAD' ? 'HEAD' : 'GET');

  app.all('/v2/*', async (c) => {
    const path = new URL(c.req.url).pathname;
    const isRead = c.req.method === 'GET' || c.req.method === 'HEAD';
    if (!isRead || RE_UPLOADS.test(path)) {
      throw new OciError('UNSUPPORTED', 'soci-proxy is a pull-through proxy: push and delete are not supported');
    }
    let m = RE_MANIFEST.exec(path);
    if (m) {
      const { upstream, repo } = route(c, m[1] as string);
      return manifests.handle({
        upstream,
        repo,
        reference: m[2] as string,
        method: method(c),
        accept: parseAccept(c.req.header('accept')),
        credentials: credentials(c),
        log: c.get('log'),
      });
    }
    m = RE_BLOB.exec(path);
    if (m) {
      const { upstream, repo } = route(c, m[1] as string);
      const out = await blobs.handle({ upstream, repo, digest: m[2] as string, method: method(c), range: c.req.header('range'), credentials: credentials(c) });
      if (!isStreamedBlob(out)) return out;
      return opts.sendStreamed ? opts.sendStreamed(c, out) : new Response(toWebStream(out), { status: out.status, headers: out.headers });
    }
    m = RE_TAGS.exec(path);
    if (m) {
      const name = m[1] as string;
      const { upstream, repo } = route(c, name);
      const q = new URL(c.req.url).searchParams;
      const n = q.get('n');
      const last = q.get('last');
      const r = await upstream.listTags(repo, { ...(n && /^\d+$/.test(n) ? { n: Number(n) } : {}), ...(last ? { last } : {}) }, credentials(c));
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (r.next) {
        const nq = new URLSearchParams();
        if (r.next.n !== undefined) nq.set('n', String(r.next.n));
        if (r.next.last !== undefined) nq.set('last', r.next.last);
        headers.Link = `</v2/${name}/tags/list?${nq.toString()}>; rel="next"`;
      }
      return new Response(c.req.method === 'HEAD' ? null : JSON.stringify({ name, tags: r.tags }), { status: 200, headers });
    }
    m = RE_REFERRERS.exec(path);
    if (m) {
      const { upstream, repo } = route(c, m[1] as string);
      const digest = m[2] as string;
      const filter = new URL(c.req.url).searchParams.get('artifactType');
      let descs = config.referrers ? ((await records.referrers(digest)) ?? []) : [];
      if (descs.length) await access.check(upstream, repo, { kind: 'manifest', digest }, credentials(c));
      if (filter) descs = descs.filter((d) => d.artifactType === filter);
      const body = marshalIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: descs });
      const headers: Record<string, string> = { 'Content-Type': MediaType.ociIndex };
      if (filter) headers['OCI-Filters-Applied'] = 'artifactType';
      return new Response(c.req.method === 'HEAD' ? null : body, { status: 200, headers });
    }
    throw new OciError('NAME_INVALID', 'unknown or invalid repository path', { status: 404 });
  });

  return { app, drain: () => manifests.drain() };
}
