import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cacheGc, cacheStats } from './admin.js';
import { assertSameBytes, blob, blobStoreContract, metaStoreContract } from './contract.js';
import { DiskMetaStore } from './disk-meta-store.js';
import { DiskBlobStore } from './disk-store.js';
import { MemoryBlobStore, MemoryMetaStore } from './memory-store.js';
import { RedisConnection } from './redis-connection.js';
import { RedisBlobStore, RedisMetaStore } from './redis-store.js';
import { startRedisServer, type RedisServerHandle } from './testing/redis-server.js';
import { TieredBlobStore, TieredMetaStore } from './tiered-store.js';

let server: RedisServerHandle;
let n = 0;
before(async () => {
  server = await startRedisServer();
});
after(() => server.stop());

async function tiers() {
  const root = await mkdtemp(join(tmpdir(), 'soci-tiered-'));
  const conn = RedisConnection.fromUrl(server.url, { keyPrefix: `tt${++n}:`, commandTimeoutMs: 500, maxReconnectDelayMs: 200 });
  assert.equal(await conn.waitReady(), true);
  const memory = new MemoryBlobStore({ maxBytes: 32 * 1024 * 1024 });
  const disk = await DiskBlobStore.open({ root, fsync: false });
  const redis = new RedisBlobStore(conn);
  const mm = new MemoryMetaStore();
  const dm = await DiskMetaStore.open({ root, fsync: false });
  const rm_ = new RedisMetaStore(conn);
  return {
    memory,
    disk,
    redis,
    mm,
    dm,
    rm: rm_,
    blobs: new TieredBlobStore([memory, disk, redis], ['memory', 'disk', 'redis']),
    meta: new TieredMetaStore([mm, dm, rm_]),
    cleanup: async () => {
      await conn.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

blobStoreContract('tiered memory+disk+redis', async () => {
  const t = await tiers();
  return { store: t.blobs, cleanup: t.cleanup };
});
metaStoreContract('tiered memory+disk+redis', async () => {
  const t = await tiers();
  return { store: t.meta, cleanup: t.cleanup };
});

describe('TieredBlobStore', () => {
  test('put writes every tier; get reads through and fills upper tiers', async () => {
    const t = await tiers();
    try {
      const a = blob(300_000);
      await t.blobs.put(a.digest, a.bytes);
      for (const s of [t.memory, t.disk, t.redis]) assertSameBytes(await s.get(a.digest), a.bytes);
      // Only in Redis (another replica wrote it): a get fills disk and memory.
      const b = blob(700_000);
      await t.redis.put(b.digest, b.bytes);
      assert.equal(await t.disk.has(b.digest), false);
      assertSameBytes(await t.blobs.get(b.digest), b.bytes);
      assertSameBytes(await t.disk.get(b.digest), b.bytes);
      assertSameBytes(await t.memory.get(b.digest), b.bytes);
      // Only on disk: fills memory, does not push down to Redis.
      const c = blob(1000);
      await t.disk.put(c.digest, c.bytes);
      assertSameBytes(await t.blobs.get(c.digest), c.bytes);
      assert.equal(await t.memory.has(c.digest), true);
      assert.equal(await t.redis.has(c.digest), false);
      const report = await cacheStats(t.blobs);
      assert.deepEqual(report.stats.tiers?.map((s) => s.tier), ['memory', 'disk', 'redis']);
      assert.equal(report.lines.length, 3);
      assert.match(report.lines[1]!, /^disk: entries=3 /);
      const gc = await cacheGc(t.blobs, 0);
      assert.equal(gc.remainingBytes, 0);
      assert.equal((await t.disk.stats()).entries, 0);
      assert.equal((await t.memory.stats()).entries, 0);
      assertSameBytes(await t.blobs.get(b.digest), b.bytes, 'still in Redis after local gc');
    } finally {
      await t.cleanup();
    }
  });

  test('Redis down: the tiered store keeps serving from local tiers', async () => {
    const t = await tiers();
    try {
      const a = blob(100_000);
      await t.blobs.put(a.digest, a.bytes);
      await server.kill();
      const b = blob(100_000);
      await t.blobs.put(b.digest, b.bytes);
      assertSameBytes(await t.blobs.get(a.digest), a.bytes);
      assertSameBytes(await t.blobs.get(b.digest), b.bytes);
      await t.meta.set('k', 'v');
      assert.equal(await t.meta.get('k'), 'v');
      await server.restart();
    } finally {
      await t.cleanup();
    }
  });
});

describe('TieredMetaStore', () => {
  test('reads through and fills upper tiers', async () => {
    const t = await tiers();
    try {
      await t.rm.set('only-redis', 'r');
      assert.equal(await t.meta.get('only-redis'), 'r');
      assert.equal(await t.dm.get('only-redis'), 'r');
      assert.equal(await t.mm.get('only-redis'), 'r');
    } finally {
      await t.cleanup();
    }
  });
});
