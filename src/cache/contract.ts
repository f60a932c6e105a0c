/**
 * The contract suites of types.ts (STYLE.md §6): `blobStoreContract` and `metaStoreContract` register
 * node:test cases for any implementation, given a factory that returns a fresh, empty store and its
 * cleanup. Every memory, disk, Redis and tiered test file runs them. They check the rules of types.ts:
 * misses, byte-exact round trips at chunk boundaries, write-side digest verification, idempotent and
 * concurrent puts, that readers never see a partial artifact, delete, stats; and for metadata: set/get,
 * overwrite, delete, TTL, and odd values.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { sha256, type Digest } from '../oci/digest.js';
import { errorCode } from '../oci/errors.js';
import type { BlobStore, MetaStore } from './types.js';

export interface Fixture<S> {
  store: S;
  cleanup(): Promise<void>;
}

export function blob(size: number): { digest: Digest; bytes: Uint8Array } {
  const bytes = new Uint8Array(randomBytes(size));
  return { digest: sha256(bytes), bytes };
}

/** Full byte comparison (never a sample). */
export function assertSameBytes(actual: Uint8Array | undefined, expected: Uint8Array, msg?: string): void {
  assert.ok(actual, msg ?? 'expected bytes, got a miss');
  assert.equal(actual.byteLength, expected.byteLength, msg);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected), msg ?? 'bytes differ');
}

async function using<S>(factory: () => Promise<Fixture<S>>, fn: (s: S) => Promise<void>): Promise<void> {
  const f = await factory();
  try {
    await fn(f.store);
  } finally {
    await f.cleanup();
  }
}

export function blobStoreContract(name: string, factory: () => Promise<Fixture<BlobStore>>): void {
  describe(`BlobStore contract: ${name}`, () => {
    test('absent digest is a miss', () =>
      using(factory, async (s) => {
        const { digest } = blob(10);
        assert.equal(await s.get(digest), undefined);
        assert.equal(await s.has(digest), false);
      }));

    test('round trips byte-exact at sizes around chunk boundaries', () =>
      using(factory, async (s) => {
        for (const size of [0, 1, 4096, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 3 * 1024 * 1024 + 17]) {
          const b = blob(size);
          await s.put(b.digest, b.bytes);
          assert.equal(await s.has(b.digest), true, `has after put (${size})`);
          assertSameBytes(await s.get(b.digest), b.bytes, `size ${size}`);
        }
      }));

    test('put verifies content against the digest', () =>
      using(factory, async (s) => {
        const a = blob(1000);
        const b = blob(1000);
        await assert.rejects(s.put(a.digest, b.bytes), (e) => errorCode(e) === 'DIGEST_INVALID');
        assert.equal(await s.get(a.digest), undefined);
        assert.equal(await s.has(a.digest), false);
        await assert.rejects(s.put('sha256:xyz' as Digest, a.bytes), (e) => errorCode(e) === 'DIGEST_INVALID');
        await assert.rejects(s.get('latest' as Digest), (e) => errorCode(e) === 'DIGEST_INVALID');
      }));

    test('put is idempotent; delete removes', () =>
      using(factory, async (s) => {
        const b = blob(70_000);
        await s.put(b.digest, b.bytes);
        await s.put(b.digest, b.bytes);
        assertSameBytes(await s.get(b.digest), b.bytes);
        await s.delete(b.digest);
        assert.equal(await s.get(b.digest), undefined);
        assert.equal(await s.has(b.digest), false);
        await s.delete(b.digest); // deleting an absent entry is fine
      }));

    test('concurrent writers of one digest; readers see all or nothing', () =>
      using(factory, async (s) => {
        const b = blob(1024 * 1024 + 3);
        let partial = 0;
        let reads = 0;
        let writing = true;
        const reader = (async () => {
          while (writing) {
            const got = await s.get(b.digest);
            reads++;
            if (got !== undefined && !Buffer.from(got).equals(b.bytes)) partial++;
            await new Promise((r) => setImmediate(r));
          }
        })();
        await Promise.all(Array.from({ length: 8 }, () => s.put(b.digest, b.bytes)));
        writing = false;
        await reader;
        assert.ok(reads > 0);
        assert.equal(partial, 0);
        assertSameBytes(await s.get(b.digest), b.bytes);
      }));

    test('independent digests do not interfere', () =>
      using(factory, async (s) => {
        const items = Array.from({ length: 20 }, (_, i) => blob(1000 + i * 997));
        await Promise.all(items.map((b) => s.put(b.digest, b.bytes)));
        for (const b of items) assertSameBytes(await s.get(b.digest), b.bytes);
      }));

    test('stats reports counters', () =>
      using(factory, async (s) => {
        const b = blob(100);
        await s.get(b.digest);
        await s.put(b.digest, b.bytes);
        await s.get(b.digest);
        const st = await s.stats();
        assert.equal(typeof st.tier, 'string');
        assert.ok(st.hits >= 1, `hits ${st.hits}`);
        assert.ok(st.misses >= 1, `misses ${st.misses}`);
        assert.ok(st.puts >= 1, `puts ${st.puts}`);
      }));
  });
}

export function metaStoreContract(name: string, factory: () => Promise<Fixture<MetaStore>>): void {
  describe(`MetaStore contract: ${name}`, () => {
    test('miss, set, get, overwrite, delete', () =>
      using(factory, async (s) => {
        const key = `ztoc:v1:${blob(1).digest}:span=4194304`;
        assert.equal(await s.get(key), undefined);
        await s.set(key, '{"v":1}');
        assert.equal(await s.get(key), '{"v":1}');
        await s.set(key, '{"v":1,"x":2}');
        assert.equal(await s.get(key), '{"v":1,"x":2}');
        await s.delete(key);
        assert.equal(await s.get(key), undefined);
      }));

    test('odd values and keys round trip exactly', () =>
      using(factory, async (s) => {
        const cases: Array<[string, string]> = [
          ['k:empty', ''],
          ['k:unicode é/ü 🙂', 'line1\nline2\t\u0000 end 🙂'],
          ['k:big', 'x'.repeat(100_000)],
          ['k: spaces ', '  leading and trailing  '],
        ];
        for (const [k, v] of cases) await s.set(k, v);
        for (const [k, v] of cases) assert.equal(await s.get(k), v, k);
      }));

    test('ttl expires a record; no ttl keeps it', () =>
      using(factory, async (s) => {
        await s.set('k:ttl', 'soon gone', 80);
        await s.set('k:keep', 'stays');
        assert.equal(await s.get('k:ttl'), 'soon gone');
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(await s.get('k:ttl'), undefined);
        assert.equal(await s.get('k:keep'), 'stays');
      }));
  });
}
