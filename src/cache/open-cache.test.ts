import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Digest } from '../oci/digest.js';
import { assertSameBytes, blob } from './contract.js';
import { onCacheEvent, type CacheEvent } from './events.js';
import { decodeRecord, encodeRecord, ztocKey, type ZtocRecord } from './keys.js';
import { openCache, type Cache } from './open-cache.js';
import { freePort, startRedisServer, type RedisServerHandle } from './testing/redis-server.js';

let server: RedisServerHandle;
const dirs: string[] = [];
before(async () => {
  server = await startRedisServer();
});
after(async () => {
  await server.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'soci-open-'));
  dirs.push(d);
  return d;
}

/** What the indexer will do: one zTOC per (layer, options), shared through the cache. */
async function ztocFor(cache: Cache, layer: Digest, counter: { n: number }): Promise<ZtocRecord> {
  const key = ztocKey(layer, { spanSize: 4 << 20, builderVersion: 'soci-proxy 0.1.0' });
  return cache.flight.run(key, {
    lookup: async () => decodeRecord<ZtocRecord>(await cache.meta.get(key)),
    compute: async () => {
      counter.n++;
      await new Promise((r) => setTimeout(r, 150));
      const z = blob(70_000); // stands in for the zTOC bytes
      await cache.blobs.put(z.digest, z.bytes); // artifact first, then the record that points at it
      const rec: ZtocRecord = { v: 1, ztoc: z.digest, size: z.bytes.byteLength };
      await cache.meta.set(key, encodeRecord(rec));
      return rec;
    },
  });
}

test('two replicas (own disk dirs, shared Redis) index a layer once and both serve the zTOC', async () => {
  const [a, b] = await Promise.all([openCache({ dir: await dir(), fsync: false, redisUrl: server.url }), openCache({ dir: await dir(), fsync: false, redisUrl: server.url })]);
  try {
    const layer = blob(10).digest;
    const counter = { n: 0 };
    const recs = await Promise.all([...Array.from({ length: 5 }, () => ztocFor(a, layer, counter)), ...Array.from({ length: 5 }, () => ztocFor(b, layer, counter))]);
    assert.equal(counter.n, 1);
    const first = recs[0]!;
    assert.ok('ztoc' in first);
    for (const r of recs) assert.deepEqual(r, first);
    const fromA = await a.blobs.get(first.ztoc);
    const fromB = await b.blobs.get(first.ztoc);
    assert.ok(fromA);
    assertSameBytes(fromB, fromA);
    assert.equal(fromA.byteLength, first.size);
  } finally {
    await a.close();
    await b.close();
  }
});

test('Redis absent at startup: opens degraded quickly and works locally', async () => {
  const port = await freePort();
  const events: CacheEvent[] = [];
  const off = onCacheEvent((e) => e.op === 'unavailable' && events.push(e));
  const t0 = Date.now();
  const c = await openCache({ dir: await dir(), fsync: false, redisUrl: `redis://127.0.0.1:${port}`, redisStartupWaitMs: 300 });
  try {
    assert.equal(c.redis?.available, false);
    const counter = { n: 0 };
    const layer = blob(11).digest;
    const [r1, r2] = await Promise.all([ztocFor(c, layer, counter), ztocFor(c, layer, counter)]);
    assert.deepEqual(r1, r2);
    assert.equal(counter.n, 1);
    assert.ok('ztoc' in r1);
    assert.ok(await c.blobs.get(r1.ztoc));
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    assert.equal(events.length, 1, 'one warning event for the outage');
  } finally {
    off();
    await c.close();
  }
});

test('no Redis configured: memory over disk, survives reopen', async () => {
  const d = await dir();
  const c1 = await openCache({ dir: d, fsync: false });
  const x = blob(5000);
  await c1.blobs.put(x.digest, x.bytes);
  await c1.meta.set('k', 'v');
  await c1.close();
  const c2 = await openCache({ dir: d });
  assertSameBytes(await c2.blobs.get(x.digest), x.bytes);
  assert.equal(await c2.meta.get('k'), 'v');
  assert.equal(c2.redis, undefined);
  await c2.close();
});
