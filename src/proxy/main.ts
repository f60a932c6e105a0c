/**
 * Composition root of `soci-proxy serve`: resolves the settings (flags > SOCI_PROXY_* environment >
 * config file > defaults, all from `options.ts`), opens the cache, starts the indexer pool, builds the
 * app and serves it with @hono/node-server (HTTP, or HTTPS with --tls-cert/--tls-key). On SIGTERM/SIGINT
 * it stops accepting, lets in-flight responses and index jobs finish up to --shutdown-timeout, releases
 * Redis, and exits.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import pino from 'pino';
import { openCache } from '../cache/index.js';
import { IndexerPool } from '../indexer/pool.js';
import { createProxyApp } from './app.js';
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
    },
    indexMode: s['index-mode'] as ProxyCoreConfig['indexMode'],
    indexWaitMs: (s['index-wait'] as number) * 1000,
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

export async function serveMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const s = resolveSettings(argv, env);
  if (s.help) return 0;
  const upstreams = upstreamsFromSettings(s);
  const core = coreConfigFromSettings(s);
  const listen = s.listen as string;
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen must be HOST:PORT, got ${JSON.stringify(listen)}`);
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  const port = Number(m[2]);
  if ((s['tls-cert'] === undefined) !== (s['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together');

  const logger = pino({ level: s['log-level'] as string, redact: { paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'password', 'token'], censor: '[redacted]' } });
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
    getMeta: (k: string) => cache.meta.get(k),
    setMeta: (k: string, v: string, ttl?: number) => cache.meta.set(k, v, ttl),
    runOnce: <T>(key: string, task: { lookup(): Promise<T | undefined>; compute(): Promise<T> }) => cache.flight.run(key, task),
  } satisfies ArtifactCache;
  const workers = s.workers as number;
  const pool = new IndexerPool(workers > 0 ? { size: workers } : {});
  const router = new ConfiguredRouter(upstreams, events);
  const { app, drain } = createProxyApp({ router, cache: artifactCache, indexer: pool, logger, config: core, events, metrics: metrics.render });

  const server = serve({
    fetch: app.fetch,
    hostname: host,
    port,
    ...(s['tls-cert'] ? { createServer: createHttpsServer, serverOptions: { cert: readFileSync(s['tls-cert'] as string), key: readFileSync(s['tls-key'] as string) } } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  logger.info({ listen, upstreams: upstreams.upstreams.map((u) => ({ name: u.name, url: u.url })), default: upstreams.defaultUpstream, indexMode: core.indexMode }, 'soci-proxy listening');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      const deadline = (s['shutdown-timeout'] as number) * 1000;
      logger.info({ signal, deadlineMs: deadline }, 'shutting down: finishing in-flight work');
      const timer = setTimeout(() => {
        logger.warn('shutdown deadline reached; exiting');
        resolve(0);
      }, deadline);
      timer.unref();
      server.close();
      void Promise.allSettled([drain()])
        .then(() => Promise.allSettled([pool.close(), router.close(), cache.close()]))
        .then(() => {
          clearTimeout(timer);
          metrics.close();
          resolve(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
