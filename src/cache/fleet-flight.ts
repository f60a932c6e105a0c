/**
 * Single flight across replicas that share Redis, wrapped around the in-process SingleFlight. Protocol
 * for `run(key, {lookup, compute})`: (1) `lookup()` (the shared cache) — a hit ends it; (2) try
 * `SET soci:lock:<key> <token> NX PX ttl`; (3a) the winner checks `lookup()` once more (a holder may have
 * just finished), runs `compute()` (which must commit its result to the shared cache before resolving),
 * renews the lock every ttl/3 with a compare-and-pexpire script, then releases it with a compare-and-delete
 * script and PUBLISHes the key on `soci:flight:done`; (3b) a loser waits for that message on a shared
 * subscriber connection, or for a poll timer with exponential backoff (fallback for a lost message), then
 * repeats from (1). A holder that dies stops renewing; its lock expires after `lockTtlMs`, and the next
 * poll of a waiter wins SET NX and takes over, so a crash costs at most one TTL. Results only become
 * visible through the cache, whose writes commit atomically, so no half-written artifact is ever seen. If
 * the holder loses its lock (a pause longer than the TTL) both may compute; artifacts are
 * content-addressed, so the duplicate write is harmless. Redis unreachable: compute locally ('degraded').
 */
import { randomBytes } from 'node:crypto';
import { publish } from './events.js';
import type { RedisConnection } from './redis-connection.js';
import { SingleFlight } from './single-flight.js';

export interface FlightTask<T> {
  /** Reads the finished result from the shared cache; undefined when not there yet. */
  lookup(): Promise<T | undefined>;
  /** Produces the result AND commits it to the shared cache before resolving. */
  compute(): Promise<T>;
}

export interface FleetFlightOptions {
  /** Lock expiry (default 30 s); a crashed holder delays others by at most this. */
  lockTtlMs?: number;
  /** First poll delay of a waiter (default 100 ms), doubled up to `pollMaxMs` (default 2 s). */
  pollMinMs?: number;
  pollMaxMs?: number;
}

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export class FleetFlight {
  readonly #conn: RedisConnection | undefined;
  readonly #local = new SingleFlight();
  readonly #ttl: number;
  readonly #pollMin: number;
  readonly #pollMax: number;
  readonly #waiters = new Map<string, Set<() => void>>();
  #subscribed: Promise<boolean> | undefined;

  /** `conn` undefined: in-process single flight only (no Redis configured). */
  constructor(conn: RedisConnection | undefined, opts: FleetFlightOptions = {}) {
    this.#conn = conn;
    this.#ttl = opts.lockTtlMs ?? 30_000;
    this.#pollMin = opts.pollMinMs ?? 100;
    this.#pollMax = opts.pollMaxMs ?? 2000;
  }

  run<T>(key: string, task: FlightTask<T>): Promise<T> {
    return this.#local.run(key, () => this.#fleet(key, task));
  }

  get #channel(): string {
    return `${this.#conn!.keyPrefix}flight:done`;
  }

  async #fleet<T>(key: string, task: FlightTask<T>): Promise<T> {
    const conn = this.#conn;
    const lockKey = conn ? `${conn.keyPrefix}lock:${key}` : '';
    let delay = this.#pollMin;
    let waited = false;
    for (;;) {
      const hit = await task.lookup();
      if (hit !== undefined) return hit;
      if (!conn) return task.compute();
      const token = randomBytes(12).toString('hex');
      const got = await conn.run((c) => c.set(lockKey, token, 'PX', this.#ttl, 'NX'));
      if (got === undefined) {
        publish({ op: 'flight', tier: 'flight', key, detail: 'degraded' });
        return task.compute();
      }
      if (got === 'OK') {
        publish({ op: 'flight', tier: 'flight', key, detail: waited ? 'takeover' : 'leader' });
        return this.#lead(key, lockKey, token, task);
      }
      if (!waited) publish({ op: 'flight', tier: 'flight', key, detail: 'remote-wait' });
      waited = true;
      await this.#waitDone(key, delay);
      delay = Math.min(delay * 2, this.#pollMax);
    }
  }

  async #lead<T>(key: string, lockKey: string, token: string, task: FlightTask<T>): Promise<T> {
    const conn = this.#conn!;
    const renew = setInterval(() => {
      void conn.run((c) => c.eval(RENEW, 1, lockKey, token, String(this.#ttl))).then((r) => {
        if (r === 0) publish({ op: 'flight', tier: 'flight', key, detail: 'lock-lost' });
      });
    }, Math.max(10, Math.floor(this.#ttl / 3)));
    try {
      const again = await task.lookup();
      if (again !== undefined) return again;
      return await task.compute();
    } finally {
      clearInterval(renew);
      await conn.run((c) => c.eval(RELEASE, 1, lockKey, token));
      await conn.run((c) => c.publish(this.#channel, key));
    }
  }

  /** Resolves on a completion message for `key` or after `ms`, whichever comes first. */
  async #waitDone(key: string, ms: number): Promise<void> {
    await this.#subscribe();
    await new Promise<void>((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        set!.delete(done);
        if (set!.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  #subscribe(): Promise<boolean> {
    if (!this.#subscribed) {
      const sub = this.#conn!.subscriber();
      sub.on('message', (channel: string, message: string) => {
        if (channel !== this.#channel) return;
        for (const fn of [...(this.#waiters.get(message) ?? [])]) fn();
      });
      // Never awaited for long: a failed subscribe leaves polling as the fallback.
      this.#subscribed = Promise.race([
        sub.subscribe(this.#channel).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(() => r(false), 200).unref()),
      ]);
    }
    return this.#subscribed;
  }
}
