import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { blob } from './contract.js';
import { DiskBlobStore } from './disk-store.js';

const dirs: string[] = [];
async function tempRoot(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'soci-disk-writer-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Writes `bytes` in 64 KiB chunks, honouring backpressure. */
async function writeAll(w: { write(c: Uint8Array): boolean; drained(): Promise<void> }, bytes: Uint8Array): Promise<void> {
  for (let p = 0; p < bytes.length; p += 65536) if (!w.write(bytes.subarray(p, p + 65536))) await w.drained();
}

describe('DiskBlobStore streaming blobs (createWriter, locate)', () => {
  test('a committed blob is located with its size and exact bytes; nothing is visible before commit', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, fsync: true });
    const b = blob(3_000_000);
    const w = s.createWriter(b.digest);
    await writeAll(w, b.bytes);
    assert.equal(await s.locate(b.digest), undefined, 'invisible before commit');
    await w.commit(b.digest);
    const hit = await s.locate(b.digest);
    assert.ok(hit);
    assert.equal(hit.size, b.bytes.length);
    assert.ok(Buffer.compare(await readFile(hit.path), b.bytes) === 0);
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
    assert.equal((await s.stats()).bytes, b.bytes.length);
    // The artifact path reads it too (it re-verifies).
    assert.ok(Buffer.compare(Buffer.from((await s.get(b.digest))!), b.bytes) === 0);
  });

  test('abort and a commit under another digest leave no file behind', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, fsync: false });
    const b = blob(200_000);
    const w1 = s.createWriter(b.digest);
    await writeAll(w1, b.bytes);
    w1.abort();
    const w2 = s.createWriter(b.digest);
    await writeAll(w2, b.bytes);
    await assert.rejects(w2.commit(blob(10).digest), (e: { code?: string }) => e.code === 'DIGEST_INVALID');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), []);
    assert.equal(await s.locate(b.digest), undefined);
  });

  test('a file not verified by this process is hashed once on locate; a damaged one is deleted as corrupt', async () => {
    const root = await tempRoot();
    const s1 = await DiskBlobStore.open({ root, fsync: false });
    const good = blob(500_000);
    const bad = blob(400_000);
    for (const b of [good, bad]) {
      const w = s1.createWriter(b.digest);
      await writeAll(w, b.bytes);
      await w.commit(b.digest);
    }
    // Damage one file behind the store's back, keeping its size; a new process (store) must notice.
    const damaged = Buffer.from(bad.bytes);
    damaged[1234] = (damaged[1234] ?? 0) ^ 0xff;
    await writeFile(join(root, 'blobs', 'sha256', bad.digest.slice(7)), damaged);
    const s2 = await DiskBlobStore.open({ root, fsync: false });
    assert.equal((await s2.locate(good.digest))?.size, good.bytes.length);
    assert.equal(await s2.locate(bad.digest), undefined);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [good.digest.slice(7)]);
    assert.equal((await s2.stats()).corrupt, 1);
    // In the first store, a size change of a trusted file triggers the same check.
    await writeFile(join(root, 'blobs', 'sha256', good.digest.slice(7)), good.bytes.subarray(0, 1000));
    assert.equal(await s1.locate(good.digest), undefined);
  });

  test('streamed blobs count toward the bound and are evicted least recently used first', async () => {
    const root = await tempRoot();
    const s = await DiskBlobStore.open({ root, fsync: false, maxBytes: 2_500_000 });
    const [a, b, c] = [blob(1_000_000), blob(1_000_001), blob(1_000_002)] as const;
    const put = async (x: typeof a): Promise<void> => {
      const w = s.createWriter(x.digest);
      await writeAll(w, x.bytes);
      await w.commit(x.digest);
    };
    await put(a);
    await new Promise((r) => setTimeout(r, 20));
    await put(b);
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(await s.locate(a.digest)); // a is now the most recently used
    await new Promise((r) => setTimeout(r, 20));
    await put(c);
    assert.ok(await s.locate(a.digest));
    assert.equal(await s.locate(b.digest), undefined, 'b was least recently used');
    assert.ok(await s.locate(c.digest));
    assert.ok(((await s.stats()).bytes ?? Infinity) <= 2_500_000);
  });
});
