/**
 * Test helper run as a child process by fleet-flight.test.ts: one "replica" that runs
 * `FleetFlight.run(key)` against a real Redis. Its compute counts itself (`INCR <prefix>runs`), works for
 * `computeMs`, commits its result to a RedisMetaStore and resolves; in 'hang' mode it never finishes, so
 * the parent can SIGKILL it while it holds the lock. It prints 'started' when compute begins and
 * 'result <value>' at the end. Usage: flight-child.ts <redisUrl> <prefix> <key> <computeMs> <normal|hang> <lockTtlMs>
 */
import { FleetFlight } from '../fleet-flight.js';
import { RedisConnection } from '../redis-connection.js';
import { RedisMetaStore } from '../redis-store.js';

const [url, prefix, key, computeMs, mode, ttl] = process.argv.slice(2);
if (!url || !prefix || !key || !computeMs || !mode || !ttl) throw new Error('usage: flight-child URL PREFIX KEY MS MODE TTL');

const conn = RedisConnection.fromUrl(url, { keyPrefix: prefix });
await conn.waitReady(5000);
const meta = new RedisMetaStore(conn);
const flight = new FleetFlight(conn, { lockTtlMs: Number(ttl), pollMinMs: 50, pollMaxMs: 400 });
const result = await flight.run(key, {
  lookup: () => meta.get(`result:${key}`),
  compute: async () => {
    process.stdout.write('started\n');
    await conn.client.incr(`${prefix}runs`);
    if (mode === 'hang') await new Promise(() => setInterval(() => {}, 1000));
    await new Promise((r) => setTimeout(r, Number(computeMs)));
    const value = `by-child-${process.pid}`;
    await meta.set(`result:${key}`, value);
    return value;
  },
});
process.stdout.write(`result ${result}\n`);
await conn.close();
