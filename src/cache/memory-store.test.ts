import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blob, blobStoreContract, metaStoreContract } from './contract.js';
import { MemoryBlobStore, MemoryMetaStore } from './memory-store.js';

blobStoreContract('memory', async () => ({ store: new MemoryBlobStore({ maxBytes: 64 * 1024 * 1024 }), cleanup: async () => {} }));
metaStoreContract('memory', async () => ({ store: new MemoryMetaStore(), cleanup: async () => {} }));

test('memory: byte bound evicts least recently used', async () => {
  const s = new MemoryBlobStore({ maxBytes: 3000 });
  const [a, b, c, d] = [blob(1000), blob(1000), blob(1000), blob(1000)];
  await s.put(a.digest, a.bytes);
  await s.put(b.digest, b.bytes);
  await s.put(c.digest, c.bytes);
  await s.get(a.digest); // a becomes most recent; b is now the LRU
  await s.put(d.digest, d.bytes);
  assert.equal(await s.has(b.digest), false);
  for (const x of [a, c, d]) assert.equal(await s.has(x.digest), true);
  const st = await s.stats();
  assert.equal(st.bytes, 3000);
  assert.equal(st.evictions, 1);
  const r = await s.gc(1000);
  assert.deepEqual(r, { removed: 2, freedBytes: 2000, remainingBytes: 1000 });
  assert.equal(await s.has(d.digest), true, 'most recent survives gc');
});
