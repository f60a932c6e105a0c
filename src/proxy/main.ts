/**
 * Composition root of `soci-proxy serve`: resolves the settings (flags > SOCI_PROXY_* environment >
 * config file > defaults, all from `options.ts`), opens the cache, starts the indexer pool, builds the
 * app and serves it with @hono/node-server (HTTP, or HTTPS with --tls-cert/--tls-key). On SIGTERM/SIGINT
 * it stops accepting, lets in-flight responses and index jobs finish up to --shutdown-timeout, releases
 * Redis, and exits.
 */
import { readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { pipeStreamedBlob, toWebStream, type StreamedBlob } from './streamed-blob.js';
import pino from 'pino';
import { openCache } from '../cache/index.js';
import { IndexerPool } from '../indexer/pool.js';
import { createProxyApp, type AppEnv } from './app.js';
import { BlobCache, type BlobFileStore } from './blob-cache.js';
import { OffThreadHasher } from './off-thread-hasher.js';
import { channelEvents } from './events.js';
import { createMetrics } from './metrics.js';
import { ConfiguredRouter } from './upstream-adapter.js';
import type { ArtifactCache } from './contracts.js';
import type { UpstreamConfig, UpstreamsConfig } from './upstream/index.js';
import { SERVE_OPTIONS, configKey, envName, optionsMarkdown, parseOptionValue, type OptionValue } from './options.js';
import type { ProxyCoreConfig } from './config.js';
import type { Digest } from '../oci/digest.js';

export type ServeSettings = Record<string, OptionValue>;

/** Resolves every setting from flags, environment and config file; throws one clear error per bad value. */
export function resolveSettings(argv: string[], env: NodeJS.ProcessEnv): ServeSettings {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { help: { type: 'boolean' } };
  for (const o of SERVE_OPTIONS) {
    options[o.flag] = o.type === 'bool' ? { type: 'boolean' } : { type: 'string', ...(o.type === 'list' ? { multiple: true } : {}) };
    if (o.type === 'bool') options[`no-${o.flag}`] = { type: 'boolean' };
  }
  const { values } = parseArgs({ args: argv, options, allowPositionals: false, strict: true });
  if (values.help) {
    process.stdout.write(`soci-proxy serve [options]\n\n${optionsMarkdown()}\n`);
    return { help: true };
  }
  const configPath = (values.config as string | undefined) ?? env[envName('config')];
  let file: Record<string, unknown> = {};
  if (configPath) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read config file ${configPath}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`config file ${configPath} must hold a JSON object`);
    file = parsed as Record<string, unknown>;
    const known = new Set(SERVE_OPTIONS.map((o) => configKey(o.flag)));
    for (const k of Object.keys(file)) if (!known.has(k)) throw new Error(`unknown key ${JSON.stringify(k)} in config file ${configPath}`);
  }
  const out: ServeSettings = {};
  for (const o of SERVE_OPTIONS) {
    let v: OptionValue;
    const flag = values[o.flag];
    if (o.type === 'bool' && values[`no-${o.flag}`]) v = false;
    else if (flag !== undefined) v = parseOptionValue(o, flag, 'flag --' + o.flag);
    else if (env[envName(o.flag)] !== undefined) v = parseOptionValue(o, env[envName(o.flag)], `environment ${envName(o.flag)}`);
    else if (file[configKey(o.flag)] !== undefined) v = parseOptionValue(o, file[configKey(o.flag)], `config key ${configKey(o.flag)}`);
    else v = o.default;
    out[o.flag] = v;
  }
  return out;
}

function pairs(list: OptionValue, what: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const item of (list as string[] | undefined) ?? []) {
    const i = item.indexOf('=');
    if (i <= 0) throw new Error(`${what} must be NAME=VALUE, got ${JSON.stringify(item.replace(/=.*/, '=…'))}`);
    m.set(item.slice(0, i), item.slice(i + 1));
  }
  return m;
}

/** `--upstream URL` (default) and `--upstream NAME=URL`, plus per-upstream credentials and CAs. */
export function upstreamsFromSettings(s: ServeSettings): UpstreamsConfig {
  const list = (s.upstream as string[] | undefined) ?? [];
  if (list.length === 0) throw new Error('at least one --upstream is required (e.g. --upstream https://registry-1.docker.io or --upstream docker.io=https://registry-1.docker.io)');
  const users = pairs(s['upstream-username'], '--upstream-username');
  const passwords = pairs(s['upstream-password'], '--upstream-password');
  const cas = pairs(s['upstream-ca-file'], '--upstream-ca-file');
  const upstreams: UpstreamConfig[] = [];
  let defaultUpstream: string | undefined;
  for (const item of list) {
    const eq = item.indexOf('=');
    const named = eq > 0 && !/^[a-z]+:\/\//i.test(item);
    const url = named ? item.slice(eq + 1) : item;
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`--upstream ${JSON.stringify(item)}: not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--upstream ${JSON.stringify(item)}: only http:// and https:// are supported`);
    const name = named ? item.slice(0, eq) : u.host === 'registry-1.docker.io' ? 'docker.io' : u.host;
    const cfg: UpstreamConfig = { name, url: u.origin };
    const user = users.get(name);
    const pass = passwords.get(name);
    if (user !== undefined) cfg.username = user;
    if (pass !== undefined) cfg.password = pass;
    const ca = cas.get(name);
    if (ca !== undefined) cfg.caFile = ca;
    upstreams.push(cfg);
    if (!named && defaultUpstream === undefined) defaultUpstream = name;
  }
  return { upstreams, defaultUpstream: defaultUpstream ?? (upstreams.length === 1 ? upstreams[0]?.name : undefined) };
}

export function coreConfigFromSettings(s: ServeSettings): Partial<ProxyCoreConfig> {
  return {
    soci: {
      spanSize: s['span-size'] as number,
      minLayerSize: s['min-layer-size'] as number,
      buildToolIdentifier: s['build-tool-id'] as string,
      spanSizeAnnotation: true,
      xattrOptimization: false,
      maxUncompressedSize: s['max-layer-uncompressed'] as number,
    },
    indexMode: s['index-mode'] as ProxyCoreConfig['indexMode'],
    indexWaitMs: (s['index-wait'] as number) * 1000,
    retryFailedAfterMs: (s['retry-failed-after'] as number) * 1000,
    plainTags: s['plain-tags'] as ProxyCoreConfig['plainTags'],
    sociTagSuffix: s['soci-tag-suffix'] as string,
    referrers: s.referrers as boolean,
    tagCacheMs: (s['tag-cache'] as number) * 1000,
  };
}

/** `--lock-ttl` in ms; a lock must outlive at least one renewal round trip, so under 1 s is refused. */
function lockTtlMs(seconds: number): number {
  if (seconds < 1) throw new Error(`--lock-ttl must be at least 1 second, got ${seconds}`);
  return Math.round(seconds * 1000);
}

/** SOCI_PROXY_* variables that name no setting (typos). Kubernetes service links of a Service named
 * `soci-proxy` (SOCI_PROXY_SERVICE_HOST, SOCI_PROXY_PORT_5000_TCP, ...) are not reported. */
export function unknownEnvNames(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(SERVE_OPTIONS.map((o) => envName(o.flag)));
  return Object.keys(env)
    .filter((k) => k.startsWith('SOCI_PROXY_') && !known.has(k))
    .filter((k) => !/^SOCI_PROXY_(SERVICE_HOST|SERVICE_PORT(_.+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$/.test(k))
    .sort();
}

/** `--listen HOST:PORT` ([v6]:PORT too); throws naming the setting. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new Error(`--listen must be HOST:PORT with a port 0-65535, got ${JSON.stringify(listen)}`);
  return { host: (m[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
}

const REDIS_SCHEMES = ['redis:', 'rediss:', 'redis+sentinel:', 'rediss+sentinel:', 'redis+cluster:', 'rediss+cluster:'];

function checkRedisUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--redis must be a URL such as redis://redis:6379, got ${JSON.stringify(url.replace(/\/\/[^@/]*@/, '//…@'))}`);
  }
  if (!REDIS_SCHEMES.includes(u.protocol)) throw new Error(`--redis: unsupported scheme ${JSON.stringify(u.protocol)} (use ${REDIS_SCHEMES.map((x) => x.slice(0, -1)).join(', ')})`);
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read --${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Blob bodies go straight onto the Node socket (no web-stream hop): the pass-through hot path. Whole
 * upstream blobs are hashed on `hasher`'s worker thread.
 */
function streamedSender(hasher: OffThreadHasher): (c: Context<AppEnv>, s: StreamedBlob) => Response {
  return (c, s) => {
    const res = c.env?.outgoing;
    if (res instanceof ServerResponse) {
      pipeStreamedBlob({ ...s, headers: { ...s.headers, 'X-Request-Id': c.get('reqId') } }, res, { hasher });
      return RESPONSE_ALREADY_SENT;
    }
    return new Response(toWebStream(s), { status: s.status, headers: s.headers });
  };
}

export async function serveMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const s = resolveSettings(argv, env);
  if (s.help) return 0;
  // Every check that can fail on a wrong value runs before anything is opened or bound.
  const upstreams = upstreamsFromSettings(s);
  const core = coreConfigFromSettings(s);
  const listen = s.listen as string;
  const { host, port } = parseListen(listen);
  if ((s['tls-cert'] === undefined) !== (s['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together');
  const tls = s['tls-cert'] ? { cert: readPem(s['tls-cert'] as string, 'tls-cert'), key: readPem(s['tls-key'] as string, 'tls-key') } : undefined;
  if (s.redis) checkRedisUrl(s.redis as string);

  const logger = pino({ level: s['log-level'] as string, redact: { paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'password', 'token'], censor: '[redacted]' } });
  const unknown = unknownEnvNames(env);
  if (unknown.length) logger.warn({ unknown }, 'ignoring SOCI_PROXY_* variables that name no setting (see soci-proxy serve --help)');
  const events = channelEvents();
  const metrics = createMetrics();
  const cache = await openCache({
    dir: s['cache-dir'] as string,
    memoryBytes: s['memory-cache-bytes'] as number,
    diskBytes: s['cache-max-bytes'] as number,
    ...(s.redis ? { redisUrl: s.redis as string } : {}),
    flight: { lockTtlMs: lockTtlMs(s['lock-ttl'] as number) },
  });
  if (cache.redis) logger.info({ redis: (s.redis as string).replace(/\/\/[^@/]*@/, '//[redacted]@') }, 'shared cache on Redis');
  const artifactCache = {
    getBlob: (d: string) => cache.blobs.get(d as Digest),
    putBlob: (d: string, b: Uint8Array) => cache.blobs.put(d as Digest, b),
    hasBlob: (d: string) => cache.blobs.has(d as Digest),
    getMeta: (k: string) => cache.meta.get(k),
    setMeta: (k: string, v: string, ttl?: number) => cache.meta.set(k, v, ttl),
    runOnce: <T>(key: string, task: { lookup(): Promise<T | undefined>; compute(): Promise<T> }) => cache.flight.run(key, task),
  } satisfies ArtifactCache;
  const blobCache = s['cache-blobs'] ? new BlobCache({ store: cache.disk satisfies BlobFileStore, logger }) : undefined;
  const hasher = new OffThreadHasher();
  const workers = s.workers as number;
  const pool = new IndexerPool(workers > 0 ? { size: workers } : {});
  const router = new ConfiguredRouter(upstreams, events);
  let stopping = false;
  const { app, drain } = createProxyApp({
    router,
    cache: artifactCache,
    indexer: pool,
    logger,
    config: core,
    events,
    metrics: metrics.render,
    sendStreamed: streamedSender(hasher),
    ...(blobCache ? { blobCache } : {}),
    // Not ready while shutting down, so a load balancer stops sending new requests on kept-alive connections.
    ready: () => Promise.resolve(!stopping),
  });

  const server = serve({
    fetch: app.fetch,
    hostname: host,
    port,
    ...(tls ? { createServer: createHttpsServer, serverOptions: tls } : {}),
  }) as HttpServer | HttpsServer;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  logger.info({ listen, tls: tls !== undefined, upstreams: upstreams.upstreams.map((u) => ({ name: u.name, url: u.url })), default: upstreams.defaultUpstream, indexMode: core.indexMode }, 'soci-proxy listening');

  const code = await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      const deadlineMs = (s['shutdown-timeout'] as number) * 1000;
      const started = Date.now();
      logger.info({ signal, deadlineMs }, 'shutting down: no new connections; finishing in-flight responses and index jobs');
      // Past the deadline: cut the remaining connections and exit 1 (work was dropped; FleetFlight locks
      // still held expire after their TTL, so another replica takes the job over).
      const timer = setTimeout(() => {
        logger.warn({ ms: Date.now() - started }, 'shutdown deadline reached; dropping remaining work');
        server.closeAllConnections();
        resolve(1);
      }, deadlineMs);
      // Kept-alive connections become idle after their response; close them as they do.
      const idle = setInterval(() => server.closeIdleConnections(), 100);
      const closed = new Promise<void>((r) => server.close(() => r()));
      void Promise.allSettled([closed, drain()])
        // Index jobs have finished here, so every Redis lock they held is released; then close Redis.
        .then(() => Promise.allSettled([pool.close(), router.close(), cache.close(), hasher.close()]))
        .then(() => {
          clearTimeout(timer);
          clearInterval(idle);
          metrics.close();
          logger.info({ ms: Date.now() - started }, 'shutdown complete');
          resolve(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // A handle that something forgot to close must not keep a stopped proxy alive.
  setTimeout(() => process.exit(code), 2000).unref();
  return code;
}
