import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { onCacheEvent, type CacheEvent } from './events.js';
import { FleetFlight, type FlightTask } from './fleet-flight.js';
import { RedisConnection } from './redis-connection.js';
import { RedisMetaStore } from './redis-store.js';
import { SingleFlight } from './single-flight.js';
import { startRedisServer, type RedisServerHandle } from './testing/redis-server.js';

const CHILD = fileURLToPath(new URL('./testing/flight-child.ts', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: RedisServerHandle;
let admin: Redis;
let n = 0;
const children: ChildProcess[] = [];
before(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url);
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  admin.disconnect();
  await server.stop();
});

async function connect(prefix: string): Promise<RedisConnection> {
  const conn = RedisConnection.fromUrl(server.url, { keyPrefix: prefix, commandTimeoutMs: 500, maxReconnectDelayMs: 200 });
  assert.equal(await conn.waitReady(), true);
  return conn;
}

/** A task whose compute counts itself in Redis and commits its result to the shared meta store. */
function task(conn: RedisConnection, prefix: string, key: string, label: string, computeMs: number): FlightTask<string> {
  const meta = new RedisMetaStore(conn);
  return {
    lookup: () => meta.get(`result:${key}`),
    compute: async () => {
      await admin.incr(`${prefix}runs`);
      await sleep(computeMs);
      await meta.set(`result:${key}`, label);
      return label;
    },
  };
}

function startChild(args: string[]): { proc: ChildProcess; started: Promise<void>; result: Promise<string> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  let out = '';
  let onStarted: () => void = () => {};
  const started = new Promise<void>((r) => (onStarted = r));
  const result = new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('started\n')) onStarted();
      const m = /result (\S+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', (code, sig) => reject(new Error(`child exited ${code ?? sig} without a result: ${out}`)));
  });
  result.catch(() => {});
  return { proc, started, result };
}

describe('SingleFlight (in process)', () => {
  test('20 concurrent runs of one key: fn runs once, everyone gets its result', async () => {
    const sf = new SingleFlight();
    let runs = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        sf.run('sha256:layer', async () => {
          runs++;
          await sleep(50);
          return { ztoc: 'z' };
        }),
      ),
    );
    assert.equal(runs, 1);
    assert.ok(results.every((r) => r === results[0]));
    assert.equal(sf.size, 0);
    // Different keys run independently; a failure is shared but not cached.
    let fails = 0;
    const bad = () => sf.run('k2', async () => { fails++; throw new Error('boom'); });
    await Promise.all([assert.rejects(bad(), /boom/), assert.rejects(bad(), /boom/)]);
    await assert.rejects(bad(), /boom/);
    assert.equal(fails, 2);
  });

  test('FleetFlight without Redis is in-process single flight', async () => {
    const ff = new FleetFlight(undefined);
    let runs = 0;
    let stored: string | undefined;
    const t: FlightTask<string> = {
      lookup: async () => stored,
      compute: async () => {
        runs++;
        await sleep(30);
        return (stored = 'v');
      },
    };
    const r = await Promise.all(Array.from({ length: 20 }, () => ff.run('k', t)));
    assert.equal(runs, 1);
    assert.ok(r.every((x) => x === 'v'));
    assert.equal(await ff.run('k', t), 'v');
    assert.equal(runs, 1, 'later calls hit the cache');
  });
});

describe('FleetFlight across replicas (real Redis)', () => {
  test('two replicas in one process, 10 concurrent requests each: compute runs once', async () => {
    const prefix = `ff${++n}:`;
    const [c1, c2] = [await connect(prefix), await connect(prefix)];
    try {
      const [f1, f2] = [new FleetFlight(c1, { pollMinMs: 20 }), new FleetFlight(c2, { pollMinMs: 20 })];
      const key = 'sha256:aaaa';
      const all = await Promise.all([
        ...Array.from({ length: 10 }, () => f1.run(key, task(c1, prefix, key, 'r1', 200))),
        ...Array.from({ length: 10 }, () => f2.run(key, task(c2, prefix, key, 'r2', 200))),
      ]);
      assert.equal(await admin.get(`${prefix}runs`), '1');
      assert.ok(all.every((x) => x === all[0]), JSON.stringify(all));
      assert.equal(await admin.exists(`${prefix}lock:${key}`), 0, 'lock released');
    } finally {
      await c1.close();
      await c2.close();
    }
  });

  test('waiters learn of completion by pub/sub, not by polling', async () => {
    const prefix = `ff${++n}:`;
    const [c1, c2] = [await connect(prefix), await connect(prefix)];
    try {
      const f1 = new FleetFlight(c1);
      const f2 = new FleetFlight(c2, { pollMinMs: 10_000, pollMaxMs: 10_000 });
      const key = 'sha256:bbbb';
      const leader = f1.run(key, task(c1, prefix, key, 'lead', 400));
      await sleep(50);
      const t0 = Date.now();
      const waiter = await f2.run(key, task(c2, prefix, key, 'wait', 0));
      await leader;
      const took = Date.now() - t0;
      assert.equal(waiter, 'lead');
      assert.ok(took < 2000, `waiter took ${took} ms (poll interval 10 s)`);
      assert.equal(await admin.get(`${prefix}runs`), '1');
    } finally {
      await c1.close();
      await c2.close();
    }
  });

  test('two child processes: compute runs once, both get the result', async () => {
    const prefix = `ff${++n}:`;
    const key = 'sha256:cccc';
    const a = startChild([server.url, prefix, key, '800', 'normal', '5000']);
    const b = startChild([server.url, prefix, key, '800', 'normal', '5000']);
    const [ra, rb] = await Promise.all([a.result, b.result]);
    assert.equal(ra, rb);
    assert.match(ra, /^by-child-\d+$/);
    assert.equal(await admin.get(`${prefix}runs`), '1');
  });

  test('holder killed mid-compute: its lock expires, a waiter takes over, all waiters get the result', async () => {
    const prefix = `ff${++n}:`;
    const key = 'sha256:dddd';
    const ttl = 1000;
    const holder = startChild([server.url, prefix, key, '0', 'hang', String(ttl)]);
    await holder.started;
    assert.equal(await admin.exists(`${prefix}lock:${key}`), 1);
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => e.op === 'flight' && events.push(e));
    const [c1, c2] = [await connect(prefix), await connect(prefix)];
    try {
      const [f1, f2] = [new FleetFlight(c1, { lockTtlMs: ttl, pollMinMs: 50, pollMaxMs: 300 }), new FleetFlight(c2, { lockTtlMs: ttl, pollMinMs: 50, pollMaxMs: 300 })];
      const waiters = [f1.run(key, task(c1, prefix, key, 'w1', 100)), f2.run(key, task(c2, prefix, key, 'w2', 100))];
      await sleep(1500); // longer than the TTL: the live holder keeps renewing
      assert.equal(await admin.exists(`${prefix}lock:${key}`), 1, 'renewed while alive');
      assert.equal(await admin.get(`${prefix}runs`), '1', 'nobody took over a live holder');
      const t0 = Date.now();
      holder.proc.kill('SIGKILL');
      const results = await Promise.all(waiters);
      const took = Date.now() - t0;
      assert.ok(took < ttl + 1500, `takeover took ${took} ms`);
      assert.equal(results[0], results[1]);
      assert.ok(results[0] === 'w1' || results[0] === 'w2');
      assert.equal(await admin.get(`${prefix}runs`), '2', 'the dead holder plus exactly one takeover');
      assert.equal(events.filter((e) => e.detail === 'takeover').length, 1);
    } finally {
      off();
      await c1.close();
      await c2.close();
    }
  });

  test('Redis unreachable: run degrades to a local compute', async () => {
    const prefix = `ff${++n}:`;
    const conn = await connect(prefix);
    try {
      const ff = new FleetFlight(conn);
      await server.kill();
      let runs = 0;
      const r = await Promise.all(
        Array.from({ length: 5 }, () =>
          ff.run('k', {
            lookup: async () => undefined,
            compute: async () => {
              runs++;
              await sleep(20);
              return 'local';
            },
          }),
        ),
      );
      assert.deepEqual(r, ['local', 'local', 'local', 'local', 'local']);
      assert.equal(runs, 1, 'still single flight within the process');
    } finally {
      await server.restart();
      await conn.close();
    }
  });
});
