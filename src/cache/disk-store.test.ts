import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { assertSameBytes, blob, blobStoreContract, metaStoreContract } from './contract.js';
import { DiskMetaStore } from './disk-meta-store.js';
import { DiskBlobStore } from './disk-store.js';
import { onCacheEvent, type CacheEvent } from './events.js';

const dirs: string[] = [];
async function tempRoot(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'soci-disk-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

blobStoreContract('disk', async () => {
  const root = await tempRoot();
  return { store: await DiskBlobStore.open({ root, fsync: false }), cleanup: () => rm(root, { recursive: true, force: true }) };
});
metaStoreContract('disk', async () => {
  const root = await tempRoot();
  return { store: await DiskMetaStore.open({ root, fsync: false }), cleanup: () => rm(root, { recursive: true, force: true }) };
});

describe('DiskBlobStore', () => {
  test('layout is <root>/blobs/sha256/<hex> and content survives reopen', async () => {
    const root = await tempRoot();
    const s1 = await DiskBlobStore.open({ root });
    const b = blob(200_000);
    await s1.put(b.digest, b.bytes);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [b.digest.slice(7)]);
    const s2 = await DiskBlobStore.open({ root });
    const st = await s2.stats();
    assert.equal(st.entries, 1);
    assert.equal(st.bytes, 200_000);
    assertSameBytes(await s2.get(b.digest), b.bytes);
  });

  test('a corrupt file is detected, deleted and not served', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, fsync: false });
    const b = blob(50_000);
    await s.put(b.digest, b.bytes);
    const file = join(root, 'blobs', 'sha256', b.digest.slice(7));
    const damaged = Buffer.from(b.bytes);
    damaged[12_345] = (damaged[12_345]! ^ 0x01) & 0xff; // one bit, same size
    await writeFile(file, damaged);
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => events.push(e));
    try {
      assert.equal(await s.get(b.digest), undefined);
    } finally {
      off();
    }
    assert.ok(events.some((e) => e.op === 'corrupt' && e.tier === 'disk' && e.key === b.digest));
    await assert.rejects(stat(file), { code: 'ENOENT' });
    assert.equal((await s.stats()).corrupt, 1);
    // A truncated file (a crash of some other writer) is also refused.
    await writeFile(file, b.bytes.subarray(0, 1000));
    assert.equal(await s.get(b.digest), undefined);
    // A later put heals it.
    await s.put(b.digest, b.bytes);
    assertSameBytes(await s.get(b.digest), b.bytes);
  });

  test('size bound evicts least recently used, also across reopen', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, maxBytes: 30_000, fsync: false });
    const [a, b, c, d] = [blob(10_000), blob(10_000), blob(10_000), blob(10_000)];
    const t0 = Date.now() / 1000;
    for (const [i, x] of [a, b, c].entries()) {
      await s.put(x.digest, x.bytes);
      // Distinct access times even on coarse clocks.
      await utimes(join(root, 'blobs', 'sha256', x.digest.slice(7)), t0 - 100 + i, t0 - 100 + i);
    }
    // Reopen so the index comes from the files' times, then touch a: b is now the LRU.
    const s2 = await DiskBlobStore.open({ root, maxBytes: 30_000, fsync: false });
    assertSameBytes(await s2.get(a.digest), a.bytes);
    await s2.put(d.digest, d.bytes);
    assert.equal(await s2.has(b.digest), false, 'LRU entry evicted');
    for (const x of [a, c, d]) assertSameBytes(await s2.get(x.digest), x.bytes);
    const st = await s2.stats();
    assert.equal(st.bytes, 30_000);
    assert.equal(st.evictions, 1);
    const r = await s2.gc(10_000);
    assert.equal(r.removed, 2);
    assert.equal(r.remainingBytes, 10_000);
    assert.equal((await readdir(join(root, 'blobs', 'sha256'))).length, 1);
  });

  test('concurrent writers of one digest from two store instances (two "processes")', async () => {
    const root = await tempRoot();
    const [s1, s2] = await Promise.all([DiskBlobStore.open({ root }), DiskBlobStore.open({ root })]);
    const b = blob(2 * 1024 * 1024);
    await Promise.all([...Array.from({ length: 5 }, () => s1.put(b.digest, b.bytes)), ...Array.from({ length: 5 }, () => s2.put(b.digest, b.bytes))]);
    assertSameBytes(await s1.get(b.digest), b.bytes);
    assertSameBytes(await s2.get(b.digest), b.bytes);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [b.digest.slice(7)]);
    assert.deepEqual(await readdir(join(root, 'tmp')), [], 'no temp files left');
  });

  test('temp files are never visible as entries and stale ones are swept at open', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, fsync: false });
    const b = blob(4 * 1024 * 1024);
    const seen = new Set<string>();
    let writing = true;
    const watcher = (async () => {
      while (writing) {
        for (const n of await readdir(join(root, 'blobs', 'sha256'))) seen.add(n);
        await new Promise((r) => setImmediate(r));
      }
    })();
    await s.put(b.digest, b.bytes);
    writing = false;
    await watcher;
    for (const n of seen) assert.equal(n, b.digest.slice(7), `unexpected name ${n} in blobs dir`);
    // A crash leftover in tmp/ is not an entry and is removed at the next open.
    const leftover = join(root, 'tmp', 'dead.1.tmp');
    await writeFile(leftover, 'partial');
    const old = Date.now() / 1000 - 7200;
    await utimes(leftover, old, old);
    const s2 = await DiskBlobStore.open({ root });
    assert.equal((await s2.stats()).entries, 1);
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
    // A stray file in the blobs dir whose name is not a digest is ignored.
    await writeFile(join(root, 'blobs', 'sha256', 'not-a-digest'), 'x');
    const s3 = await DiskBlobStore.open({ root });
    assert.equal((await s3.stats()).entries, 1);
  });
});

describe('DiskMetaStore', () => {
  test('survives reopen; damaged or misplaced records read as misses', async () => {
    const root = await tempRoot();
    const m1 = await DiskMetaStore.open({ root });
    await m1.set('a', 'value-a');
    await m1.set('b', 'value-b');
    const m2 = await DiskMetaStore.open({ root });
    assert.equal(await m2.get('a'), 'value-a');
    // Plant a record whose value was altered without its checksum.
    const files: string[] = [];
    for (const sub of await readdir(join(root, 'meta'))) for (const f of await readdir(join(root, 'meta', sub))) files.push(join(root, 'meta', sub, f));
    assert.equal(files.length, 2);
    const { readFile } = await import('node:fs/promises');
    for (const f of files) {
      const rec = JSON.parse(await readFile(f, 'utf8')) as { key: string; value: string };
      if (rec.key === 'a') await writeFile(f, JSON.stringify({ ...rec, value: 'forged' }));
      else await writeFile(f, '{"trunc');
    }
    assert.equal(await m2.get('a'), undefined);
    assert.equal(await m2.get('b'), undefined);
  });
});
