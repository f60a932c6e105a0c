/**
 * The pull-through blob cache end to end (blob-cache.ts): docker-registry as the upstream, a TCP fault
 * proxy between it and soci-proxy (to damage one upstream body), the built CLI as the proxy. A layer
 * fetched twice is read from upstream once (the registry's access log counts the GETs); cached bytes,
 * Ranges (206, every byte checked) and HEAD headers equal the blob's; a corrupt upstream body reaches no
 * client complete and is never kept; a layer indexed for SOCI is served afterwards without a second
 * upstream read; a client that leaves mid-body still leaves a complete cached copy; a small
 * --cache-max-bytes evicts the least recently used blob; --no-cache-blobs keeps nothing; and a private
 * repository's cached blob is refused (401) to anonymous and wrong credentials.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pushImage, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry } from './harness/index.js';
import { startFaultProxy, type FaultProxy } from './faults/fault-proxy.js';
import { ACCEPT, faultImage, get, sha, sleep } from './faults/common.js';

const HAVE_DIST = existsSync(new URL('../dist/cli.js', import.meta.url));
const BASE = ['--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'warn'];

const layerOf = (img: BuiltImage): { digest: string; blob: Buffer } => ({ digest: img.layers[0]!.descriptor.digest, blob: img.layers[0]!.blob });
const cachedFile = (cacheDir: string, digest: string): string => join(cacheDir, 'blobs', 'sha256', digest.slice(7));

/** Upstream GETs of one blob (any repository) that the registry answered with its bytes (not 401/404). */
async function upstreamGets(registry: Registry, digest: string): Promise<number> {
  await registry.settle(150);
  return registry.requests().filter((e) => e.method === 'GET' && e.blob === digest && e.status < 300).length;
}

/** The cache commits after the response ended (fsync + rename): wait for the file. */
async function waitCached(cacheDir: string, digest: string, present = true): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (existsSync(cachedFile(cacheDir, digest)) === present) return;
    await sleep(50);
  }
  assert.fail(`${digest} ${present ? 'never appeared in' : 'stayed in'} the cache`);
}

function assertBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  assert.ok(Buffer.compare(Buffer.from(got), want) === 0, `${what}: bytes differ`);
}

describe('pull-through blob cache', { skip: HAVE_DIST ? false : 'run `npm run build` first (dist/cli.js missing)' }, () => {
  const work = tempDir('proxy-blob-cache');
  const cacheDir = join(work.path, 'cache');
  let registry: Registry;
  let faults: FaultProxy;
  let proxy: Proxy;
  const images: BuiltImage[] = [];

  before(async () => {
    registry = await startRegistry();
    for (let i = 1; i <= 6; i++) {
      const img = await faultImage(700 + i, 1024 * 1024);
      images.push(img);
      await pushImage(img, { registry: registry.url, repo: `cache/i${i}`, tag: 'v1' });
    }
    faults = await startFaultProxy(registry.host);
    proxy = await startProxy({ upstream: faults.url, dir: join(work.path, 'proxy'), extraArgs: [...BASE, '--index-mode', 'wait', '--cache-dir', cacheDir] });
  });
  after(async () => {
    await proxy?.stop();
    await faults?.close();
    await registry?.stop();
    work.remove();
  });

  test('a layer fetched twice is read from upstream once; GET, Range and HEAD from the cache are exact', async () => {
    const { digest, blob } = layerOf(images[0]!);
    const url = `${proxy.url}/v2/cache/i1/blobs/${digest}`;
    const first = await get(url);
    assert.equal(first.status, 200);
    assertBytes(first.body, blob, 'first GET');
    await waitCached(cacheDir, digest);
    assert.equal(statSync(cachedFile(cacheDir, digest)).size, blob.length);

    const second = await get(url);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('content-length'), String(blob.length));
    assert.equal(second.headers.get('docker-content-digest'), digest);
    assertBytes(second.body, blob, 'cached GET');
    assert.equal(sha(second.body), digest);

    const n = blob.length;
    const ranges: Array<[string, number, number]> = [
      ['bytes=0-0', 0, 0],
      ['bytes=0-65535', 0, 65535],
      ['bytes=1000-2500000', 1000, Math.min(2500000, n - 1)],
      [`bytes=${n - 1}-`, n - 1, n - 1],
      ['bytes=-100', n - 100, n - 1],
      [`bytes=${n - 300000}-${n + 5000}`, n - 300000, n - 1],
      ['bytes=123457-', 123457, n - 1],
    ];
    for (const [range, start, end] of ranges) {
      const r = await get(url, { range });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers.get('content-range'), `bytes ${start}-${end}/${n}`, range);
      assert.equal(r.headers.get('content-length'), String(end - start + 1), range);
      assertBytes(r.body, blob.subarray(start, end + 1), range);
    }
    const unsat = await get(url, { range: `bytes=${n}-` });
    assert.equal(unsat.status, 416);
    assert.equal(unsat.headers.get('content-range'), `bytes */${n}`);

    const head = await get(url, {}, 20_000, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(n));
    assert.equal(head.headers.get('docker-content-digest'), digest);
    assert.equal(head.headers.get('accept-ranges'), 'bytes');
    assert.equal(head.body.length, 0);
    const headRange = await get(url, { range: 'bytes=10-19' }, 20_000, 'HEAD');
    assert.equal(headRange.status, 206);
    assert.equal(headRange.headers.get('content-range'), `bytes 10-19/${n}`);

    assert.equal(await upstreamGets(registry, digest), 1, 'one upstream GET for all of the above');
    // The same digest in another repository is cached too (after the upstream accepts the client there).
    const other = await get(`${proxy.url}/v2/cache/i2/blobs/${digest}`);
    assert.equal(other.status, 404, 'a blob the upstream does not have in that repository is not served from the cache');
  });

  test('a corrupt upstream body reaches no client complete and is never cached', async () => {
    const { digest, blob } = layerOf(images[1]!);
    const url = `${proxy.url}/v2/cache/i2/blobs/${digest}`;
    for (const offset of [7, blob.length - 1]) {
      faults.setRules([{ match: (q) => q.method === 'GET' && q.path.endsWith(digest), fault: { mode: 'flip', offset }, times: 1 }]);
      const r = await get(url);
      assert.ok(!(r.status === 200 && r.body.length === blob.length), `flip at ${offset}: the transfer must fail, got ${r.status} with ${r.body.length} bytes`);
      await sleep(300);
      assert.ok(!existsSync(cachedFile(cacheDir, digest)), `flip at ${offset}: nothing cached`);
    }
    faults.clearRules();
    assert.equal(faults.injected >= 2, true, 'the faults were applied');
    const good = await get(url);
    assertBytes(good.body, blob, 'after the faults');
    await waitCached(cacheDir, digest);
    assert.equal(await upstreamGets(registry, digest), 3);
    assertBytes((await get(url)).body, blob, 'cached after a good transfer');
    assert.equal(await upstreamGets(registry, digest), 3);
    const leftovers = readdirSync(join(cacheDir, 'tmp'));
    assert.deepEqual(leftovers, [], 'no temp files left behind');
  });

  test('a layer indexed for SOCI is served from the cache without a second upstream read', async () => {
    const img = images[2]!;
    const { digest, blob } = layerOf(img);
    const m = await get(`${proxy.url}/v2/cache/i3/manifests/v1`, { accept: ACCEPT });
    assert.equal(m.status, 200);
    assert.notEqual(m.headers.get('docker-content-digest'), img.descriptor.digest, 'the SOCI-enabled index was built');
    assert.equal(await upstreamGets(registry, digest), 1, 'indexing read the layer once');
    await waitCached(cacheDir, digest);
    const r = await get(`${proxy.url}/v2/cache/i3/blobs/${digest}`);
    assertBytes(r.body, blob, 'layer after indexing');
    assert.equal(await upstreamGets(registry, digest), 1, 'still one upstream GET');
  });

  test('a client that leaves mid-body still leaves a complete, verified cached copy', async () => {
    const { digest, blob } = layerOf(images[3]!);
    faults.setRules([{ match: (q) => q.method === 'GET' && q.path.endsWith(digest), fault: { mode: 'trickle', bytesPerTick: 128 * 1024, intervalMs: 20 }, times: 1 }]);
    await new Promise<void>((resolve, reject) => {
      const req = request(`${proxy.url}/v2/cache/i4/blobs/${digest}`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
      req.end();
    });
    await waitCached(cacheDir, digest);
    faults.clearRules();
    const r = await get(`${proxy.url}/v2/cache/i4/blobs/${digest}`);
    assertBytes(r.body, blob, 'after the client left');
    assert.equal(await upstreamGets(registry, digest), 1);
  });

  test('--no-cache-blobs keeps nothing; a small --cache-max-bytes evicts the least recently used blob', async () => {
    const off = await startProxy({ upstream: registry.url, dir: join(work.path, 'p-off'), extraArgs: [...BASE, '--index-mode', 'off', '--no-cache-blobs', '--cache-dir', join(work.path, 'c-off')] });
    const small = join(work.path, 'c-small');
    // Layers are ~1.03 MB: two fit under 2.5 MB, a third evicts the least recently used.
    const bounded = await startProxy({ upstream: registry.url, dir: join(work.path, 'p-small'), extraArgs: [...BASE, '--index-mode', 'off', '--cache-max-bytes', '2500000', '--cache-dir', small] });
    try {
      const { digest, blob } = layerOf(images[4]!);
      for (let i = 0; i < 2; i++) assertBytes((await get(`${off.url}/v2/cache/i5/blobs/${digest}`)).body, blob, 'uncached');
      await sleep(300);
      assert.equal(readdirSync(join(work.path, 'c-off', 'blobs', 'sha256')).length, 0);
      assert.equal(await upstreamGets(registry, digest), 2);

      const [a, b, c] = [images[0]!, images[1]!, images[5]!].map(layerOf) as [ReturnType<typeof layerOf>, ReturnType<typeof layerOf>, ReturnType<typeof layerOf>];
      const before = await Promise.all([a, b, c].map((x) => upstreamGets(registry, x.digest)));
      const fetch = async (x: typeof a, repo: string): Promise<void> => assertBytes((await get(`${bounded.url}/v2/${repo}/blobs/${x.digest}`)).body, x.blob, repo);
      await fetch(a, 'cache/i1');
      await waitCached(small, a.digest);
      await fetch(b, 'cache/i2');
      await waitCached(small, b.digest);
      await fetch(a, 'cache/i1'); // a is now more recently used than b
      await fetch(c, 'cache/i6');
      await waitCached(small, c.digest);
      await waitCached(small, b.digest, false);
      assert.ok(existsSync(cachedFile(small, a.digest)), 'the recently used blob stays');
      const total = readdirSync(join(small, 'blobs', 'sha256')).reduce((s, f) => s + statSync(join(small, 'blobs', 'sha256', f)).size, 0);
      assert.ok(total <= 2_500_000, `cache holds ${total} bytes`);
      await fetch(b, 'cache/i2');
      const afterCounts = await Promise.all([a, b, c].map((x) => upstreamGets(registry, x.digest)));
      assert.deepEqual(afterCounts.map((n, i) => n - before[i]!), [1, 2, 1], 'a and c once each; b again after its eviction');
    } finally {
      await off.stop();
      await bounded.stop();
    }
  });
});

describe('pull-through blob cache: private repository', { skip: HAVE_DIST ? false : 'run `npm run build` first (dist/cli.js missing)' }, () => {
  const work = tempDir('proxy-blob-cache-auth');
  const PASSWORD = 'pw-blob-cache-9k';
  let registry: Registry;
  let proxy: Proxy;
  let img: BuiltImage;

  before(async () => {
    registry = await startRegistry({ auth: { htpasswd: { user: 'carol', password: PASSWORD } } });
    img = await faultImage(801, 512 * 1024);
    await pushImage(img, { registry: registry.url, repo: 'private/blob', tag: 'v1', authorization: registry.authorization! });
    proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy'), extraArgs: [...BASE, '--index-mode', 'off', '--cache-dir', join(work.path, 'cache')] });
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('a cached private blob is refused to anonymous and wrong credentials, served to the right ones', async () => {
    const { digest, blob } = layerOf(img);
    const url = `${proxy.url}/v2/private/blob/blobs/${digest}`;
    const auth = { authorization: registry.authorization! };
    assertBytes((await get(url, auth)).body, blob, 'authorized GET');
    await waitCached(join(work.path, 'cache'), digest);
    const wrong = `Basic ${Buffer.from('carol:not-the-password').toString('base64')}`;
    for (const who of [{}, { authorization: wrong }] as Array<Record<string, string>>) {
      for (const [method, extra] of [['GET', {}], ['HEAD', {}], ['GET', { range: 'bytes=0-99' }]] as Array<[string, Record<string, string>]>) {
        const r = await get(url, { ...who, ...extra }, 20_000, method);
        assert.equal(r.status, 401, `${method} ${JSON.stringify(extra)} by ${who.authorization ? 'wrong' : 'anonymous'} credentials`);
        assert.ok(r.body.length < 1000, 'no blob bytes in the refusal');
      }
    }
    const again = await get(url, auth);
    assertBytes(again.body, blob, 'authorized GET from the cache');
    assert.equal(await upstreamGets(registry, digest), 1, 'one upstream GET');
  });
});
