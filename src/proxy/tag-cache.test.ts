import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TagCache, type TagCacheKey, type TagResolution } from './tag-cache.js';

const key = (over: Partial<TagCacheKey> = {}): TagCacheKey => ({
  upstream: 'r', repo: 'library/python', tag: '3.12', accept: ['a', 'b'], credentials: { authorization: undefined }, ...over,
});
const res = (n: number): TagResolution => ({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${String(n).padStart(64, '0')}`, size: n });

/** A resolver whose answers the test releases by hand, counting calls. */
function gate() {
  const pending: Array<{ resolve: (r: TagResolution) => void; reject: (e: Error) => void }> = [];
  return {
    calls: () => pending.length,
    fn: () => new Promise<TagResolution>((resolve, reject) => pending.push({ resolve, reject })),
    answer: (i: number, r: TagResolution) => pending[i]!.resolve(r),
    fail: (i: number, e: Error) => pending[i]!.reject(e),
  };
}

describe('TagCache', () => {
  test('cache off: concurrent resolutions of one key share one upstream call, later ones ask again', async () => {
    const c = new TagCache({ ttlMs: 0 });
    const g = gate();
    const all = Array.from({ length: 16 }, () => c.resolve(key(), g.fn));
    assert.equal(g.calls(), 1);
    g.answer(0, res(1));
    for (const r of await Promise.all(all)) assert.deepEqual(r, { resolution: res(1), cached: false });
    const again = c.resolve(key(), g.fn);
    assert.equal(g.calls(), 2, 'a settled resolution is not reused with the cache off');
    g.answer(1, res(2));
    assert.deepEqual((await again).resolution, res(2));
  });

  test('different credentials, tags or Accept sets never share a call', async () => {
    const c = new TagCache({ ttlMs: 0 });
    const g = gate();
    const ps = [
      c.resolve(key(), g.fn),
      c.resolve(key({ credentials: { authorization: 'Basic YTpi' } }), g.fn),
      c.resolve(key({ tag: '3.11' }), g.fn),
      c.resolve(key({ accept: ['a'] }), g.fn),
      c.resolve(key({ accept: ['b', 'a'] }), g.fn), // same set as key(): shares
    ];
    assert.equal(g.calls(), 4);
    for (let i = 0; i < 4; i++) g.answer(i, res(i + 10));
    const out = await Promise.all(ps);
    assert.deepEqual(out.map((o) => o.resolution.size), [10, 11, 12, 13, 10]);
  });

  test('a failure reaches every waiter and is not remembered', async () => {
    const c = new TagCache({ ttlMs: 60_000 });
    const g = gate();
    const ps = [c.resolve(key(), g.fn), c.resolve(key(), g.fn)];
    g.fail(0, new Error('upstream down'));
    for (const p of ps) await assert.rejects(p, /upstream down/);
    const next = c.resolve(key(), g.fn);
    assert.equal(g.calls(), 2);
    g.answer(1, res(3));
    assert.deepEqual(await next, { resolution: res(3), cached: false });
    assert.deepEqual(await c.resolve(key(), g.fn), { resolution: res(3), cached: true }, 'cache on: a success is reused');
    assert.equal(g.calls(), 2);
  });
});
