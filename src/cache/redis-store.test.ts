import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { assertSameBytes, blob, blobStoreContract, metaStoreContract } from './contract.js';
import { onCacheEvent, type CacheEvent } from './events.js';
import { RedisConnection } from './redis-connection.js';
import { RedisBlobStore, RedisMetaStore } from './redis-store.js';
import { startRedisServer, type RedisServerHandle } from './testing/redis-server.js';

let server: RedisServerHandle;
let admin: Redis;
let n = 0;

before(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
});
after(async () => {
  admin.disconnect();
  await server.stop();
});

async function connect(prefix = `t${++n}:`): Promise<RedisConnection> {
  const conn = RedisConnection.fromUrl(server.url, { keyPrefix: prefix, commandTimeoutMs: 500, maxReconnectDelayMs: 200 });
  assert.equal(await conn.waitReady(5000), true);
  return conn;
}

blobStoreContract('redis', async () => {
  const conn = await connect();
  return { store: new RedisBlobStore(conn), cleanup: () => conn.close() };
});
metaStoreContract('redis', async () => {
  const conn = await connect();
  return { store: new RedisMetaStore(conn), cleanup: () => conn.close() };
});

describe('RedisBlobStore', () => {
  test('8 MB artifact is chunked (512 KiB) and round trips', async () => {
    const conn = await connect();
    try {
      const s = new RedisBlobStore(conn);
      const b = blob(8 * 1024 * 1024);
      await s.put(b.digest, b.bytes);
      const manifest = JSON.parse((await admin.get(s.manifestKey(b.digest)))!) as { n: number; size: number };
      assert.deepEqual(manifest, { size: 8 * 1024 * 1024, chunk: 512 * 1024, n: 16 });
      for (let i = 0; i < 16; i++) assert.equal(await admin.strlen(s.chunkKey(b.digest, i)), 512 * 1024, `chunk ${i}`);
      assert.equal(await admin.exists(s.chunkKey(b.digest, 16)), 0);
      const ttl = await admin.pttl(s.manifestKey(b.digest));
      assert.ok(ttl > 6 * 24 * 3_600_000 && ttl <= 7 * 24 * 3_600_000, `ttl ${ttl}`);
      assertSameBytes(await s.get(b.digest), b.bytes);
      // Above maxBlobBytes nothing is written (the disk tier keeps such artifacts).
      const small = new RedisBlobStore(conn, { maxBlobBytes: 1024 * 1024 });
      const big = blob(1024 * 1024 + 1);
      await small.put(big.digest, big.bytes);
      assert.equal(await admin.exists(small.manifestKey(big.digest)), 0);
    } finally {
      await conn.close();
    }
  });

  test('corrupt, missing and malformed values are detected, deleted and not served', async () => {
    const conn = await connect();
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => events.push(e));
    try {
      const s = new RedisBlobStore(conn);
      const b = blob(1300 * 1024); // 3 chunks
      await s.put(b.digest, b.bytes);
      // Flip one byte in the middle chunk, same length.
      const chunk = (await admin.getBuffer(s.chunkKey(b.digest, 1)))!;
      chunk[100] = (chunk[100]! ^ 0xff) & 0xff;
      await admin.set(s.chunkKey(b.digest, 1), chunk);
      assert.equal(await s.get(b.digest), undefined);
      assert.ok(events.some((e) => e.op === 'corrupt' && e.tier === 'redis' && e.key === b.digest));
      assert.equal(await admin.exists(s.manifestKey(b.digest), s.chunkKey(b.digest, 0), s.chunkKey(b.digest, 1), s.chunkKey(b.digest, 2)), 0);
      // A chunk evicted on its own: a miss, and the remains are removed.
      await s.put(b.digest, b.bytes);
      await admin.del(s.chunkKey(b.digest, 2));
      assert.equal(await s.get(b.digest), undefined);
      assert.equal(await admin.exists(s.manifestKey(b.digest)), 0);
      // A malformed manifest and a manifest that lies about the size.
      await s.put(b.digest, b.bytes);
      await admin.set(s.manifestKey(b.digest), '{not json');
      assert.equal(await s.get(b.digest), undefined);
      await s.put(b.digest, b.bytes);
      await admin.set(s.manifestKey(b.digest), JSON.stringify({ size: 5, chunk: 512 * 1024, n: 3 }));
      assert.equal(await s.get(b.digest), undefined);
      assert.ok((await s.stats()).corrupt >= 3);
      // Healed by a new put.
      await s.put(b.digest, b.bytes);
      assertSameBytes(await s.get(b.digest), b.bytes);
      // Metadata: a forged value is refused.
      const m = new RedisMetaStore(conn);
      await m.set('k', 'v1');
      const raw = (await admin.get(m.key('k')))!;
      await admin.set(m.key('k'), raw.replace(/v1$/, 'v2'));
      assert.equal(await m.get('k'), undefined);
      assert.equal(await admin.exists(m.key('k')), 0);
    } finally {
      off();
      await conn.close();
    }
  });

  test('Redis killed mid-use: operations degrade without throwing, then recover after restart', async () => {
    const conn = await connect();
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => {
      if (e.op === 'unavailable' || e.op === 'available') events.push(e);
    });
    try {
      const s = new RedisBlobStore(conn);
      const m = new RedisMetaStore(conn);
      const before = blob(600_000);
      await s.put(before.digest, before.bytes);
      await server.kill();
      const b = blob(100_000);
      const t0 = Date.now();
      for (let i = 0; i < 5; i++) {
        assert.equal(await s.get(before.digest), undefined);
        await s.put(b.digest, b.bytes);
        assert.equal(await s.has(b.digest), false);
        await s.delete(b.digest);
        assert.equal(await m.get('k'), undefined);
        await m.set('k', 'v');
      }
      assert.ok(Date.now() - t0 < 5000, `degraded ops took ${Date.now() - t0} ms`);
      assert.equal(conn.available, false);
      assert.equal(events.filter((e) => e.op === 'unavailable').length, 1, 'one warning per outage');
      assert.ok((await s.stats()).unavailable >= 5);
      await server.restart();
      assert.equal(await conn.waitReady(10_000), true, 'reconnected');
      assert.equal(conn.available, true);
      assert.ok(events.some((e) => e.op === 'available'));
      await s.put(b.digest, b.bytes);
      assertSameBytes(await s.get(b.digest), b.bytes);
      await m.set('k', 'v');
      assert.equal(await m.get('k'), 'v');
    } finally {
      off();
      await conn.close();
    }
  });

  test('Redis hung (network cut): operations time out into misses, then recover', async () => {
    const conn = await connect();
    try {
      const s = new RedisBlobStore(conn);
      const b = blob(10_000);
      await s.put(b.digest, b.bytes);
      server.pause();
      const t0 = Date.now();
      let got: Uint8Array | undefined;
      try {
        got = await s.get(b.digest);
      } finally {
        server.resume();
      }
      const took = Date.now() - t0;
      assert.equal(got, undefined);
      assert.ok(took >= 400 && took < 3000, `timed out after ${took} ms`);
      assert.equal(await conn.waitReady(10_000), true);
      // The connection may be re-established; give it a moment, then it serves again.
      let again: Uint8Array | undefined;
      for (let i = 0; i < 50 && !again; i++) {
        again = await s.get(b.digest);
        if (!again) await new Promise((r) => setTimeout(r, 100));
      }
      assertSameBytes(again, b.bytes);
    } finally {
      await conn.close();
    }
  });
});
