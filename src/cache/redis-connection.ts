/**
 * One shared Redis connection with an availability state, used by the Redis stores and FleetFlight.
 * `--redis URL` accepts `redis://` / `rediss://` (a single server, ioredis's own URL form),
 * `redis+sentinel://[:pw@]h1:26379,h2:26379/<master>[/<db>]` (ioredis Sentinel options) and
 * `redis+cluster://[:pw@]h1:7000,h2:7001` (ioredis Cluster). The client is configured to fail fast rather
 * than queue: `enableOfflineQueue: false` (a command while disconnected rejects at once),
 * `maxRetriesPerRequest: 1`, `commandTimeout` (a cut network rejects after a bound), and a bounded
 * exponential `retryStrategy` that never gives up, so the connection comes back on its own when Redis
 * returns. `run()` turns every failure into `undefined`, flips the state to unavailable (one 'unavailable'
 * event per outage, and a counter) and back on 'ready' ('available'). Callers degrade to local tiers.
 */
import { EventEmitter } from 'node:events';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { publish } from './events.js';

export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  /** Per-command bound (default 1000 ms). */
  commandTimeoutMs?: number;
  /** Connect bound (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Longest pause between reconnect attempts (default 2000 ms). */
  maxReconnectDelayMs?: number;
  /** Prefix of every key and channel (default 'soci:'). */
  keyPrefix?: string;
}

/** Parses a `--redis` URL into a ready-to-connect ioredis client (not yet awaited). */
export function createRedisClient(url: string, opts: RedisConnectionOptions = {}): RedisClient {
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs ?? 1000,
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), opts.maxReconnectDelayMs ?? 2000),
    lazyConnect: false,
  };
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, '');
  const auth: RedisOptions = {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
  const hosts = () =>
    u.host.split(',').map((h) => {
      const i = h.lastIndexOf(':');
      return i > 0 ? { host: h.slice(0, i), port: Number(h.slice(i + 1)) } : { host: h, port: 0 };
    });
  if (scheme === 'redis' || scheme === 'rediss') return new Redis(url, base);
  if (scheme === 'redis+sentinel' || scheme === 'rediss+sentinel') {
    const [name, db] = u.pathname.split('/').filter(Boolean);
    if (!name) throw new Error(`redis sentinel URL needs a master name: ${url}`);
    return new Redis({
      ...base,
      ...auth,
      sentinels: hosts().map((h) => ({ host: h.host, port: h.port || 26379 })),
      name,
      ...(db ? { db: Number(db) } : {}),
      ...(scheme.startsWith('rediss') ? { tls: {} } : {}),
    });
  }
  if (scheme === 'redis+cluster' || scheme === 'rediss+cluster') {
    const { enableOfflineQueue, ...redisOptions } = base;
    return new Cluster(
      hosts().map((h) => ({ host: h.host, port: h.port || 6379 })),
      {
        enableOfflineQueue,
        clusterRetryStrategy: base.retryStrategy,
        redisOptions: { ...redisOptions, ...auth, ...(scheme.startsWith('rediss') ? { tls: {} } : {}) },
      },
    );
  }
  throw new Error(`unsupported redis URL scheme ${JSON.stringify(scheme)}`);
}

/**
 * Availability-tracking wrapper. Events: 'unavailable' (err), 'available'. The client's own 'error'
 * events are consumed here, so an outage never crashes the process.
 */
export class RedisConnection extends EventEmitter {
  readonly client: RedisClient;
  readonly keyPrefix: string;
  /** 'unknown' until the first success or failure, so an outage at startup is reported too. */
  #state: 'unknown' | 'up' | 'down';
  #failures = 0;
  #subscriber: RedisClient | undefined;
  #closed = false;

  constructor(client: RedisClient, opts: { keyPrefix?: string } = {}) {
    super();
    this.client = client;
    this.keyPrefix = opts.keyPrefix ?? 'soci:';
    this.#state = client.status === 'ready' ? 'up' : 'unknown';
    client.on('error', (err: unknown) => this.#markDown(err));
    client.on('ready', () => this.#markUp());
    client.on('close', () => this.#markDown(new Error('redis connection closed')));
  }

  static fromUrl(url: string, opts: RedisConnectionOptions = {}): RedisConnection {
    return new RedisConnection(createRedisClient(url, opts), opts.keyPrefix !== undefined ? { keyPrefix: opts.keyPrefix } : {});
  }

  get available(): boolean {
    return this.#state === 'up';
  }

  /** Operations dropped because Redis was unreachable. */
  get failures(): number {
    return this.#failures;
  }

  /** Resolves true once connected, false after `timeoutMs`. */
  async waitReady(timeoutMs = 5000): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(t);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const t = setTimeout(() => done(false), timeoutMs);
      this.client.on('ready', onReady);
    });
  }

  #markDown(err: unknown): void {
    if (this.#state === 'down' || this.#closed) return;
    this.#state = 'down';
    publish({ op: 'unavailable', tier: 'redis', error: err, detail: err instanceof Error ? err.message : String(err) });
    this.emit('unavailable', err);
  }

  #markUp(): void {
    if (this.#state === 'up') return;
    const wasDown = this.#state === 'down';
    this.#state = 'up';
    if (!wasDown) return;
    publish({ op: 'available', tier: 'redis' });
    this.emit('available');
  }

  /** Runs `fn`; any failure (offline, timeout, connection reset) yields undefined and marks the outage. */
  async run<T>(fn: (c: RedisClient) => Promise<T>): Promise<T | undefined> {
    try {
      return await fn(this.client);
    } catch (err) {
      this.#failures++;
      this.#markDown(err);
      return undefined;
    }
  }

  /** A second connection for SUBSCRIBE (created on first use; queues its SUBSCRIBE until connected). */
  subscriber(): RedisClient {
    if (!this.#subscriber) {
      const sub =
        this.client instanceof Cluster ? this.client.duplicate(undefined, { enableOfflineQueue: true }) : this.client.duplicate({ enableOfflineQueue: true });
      sub.on('error', () => {});
      this.#subscriber = sub;
    }
    return this.#subscriber;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [this.client, this.#subscriber].filter((c): c is RedisClient => c !== undefined);
    await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
