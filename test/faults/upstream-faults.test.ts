/**
 * Upstream faults between soci-proxy and docker-registry: the TCP fault proxy damages layer bodies while
 * the proxy indexes them (byte flip, reset, truncation with a correct Content-Length, stall, trickle) and
 * while it passes blobs through to clients; a node:http upstream answers 5xx and 429 + Retry-After. For
 * every case the client gets the right bytes or a clean OCI error / broken transfer; a layer whose digest
 * did not verify never yields a zTOC (the cache directory holds no zTOC but those of verified SOCI
 * indexes); the image is served original, and once the fault is gone (after --retry-failed-after) a later
 * request gets a SOCI index whose every span verifies against the real layer. The proxy stays up and its
 * RSS stays bounded over many faulted requests.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pushImage, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry } from '../harness/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { startFaultProxy, type Fault, type FaultProxy } from './fault-proxy.js';
import { startHttpUpstream, type HttpUpstream } from './http-upstream.js';
import { ACCEPT, auditCacheDir, faultImage, get, judge, rssOf, sha, sleep, verifySoci } from './common.js';
import { record, tally } from './summary.js';

const HAVE_DIST = existsSync(new URL('../../dist/cli.js', import.meta.url));
const ARGS = ['--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--index-wait', '30', '--retry-failed-after', '1', '--log-level', 'warn'];

describe('upstream faults', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  const t = tally();
  const work = tempDir('faults-upstream');
  let registry: Registry;
  let faults: FaultProxy;
  let http: HttpUpstream;
  let viaTcp: Proxy;
  let viaHttp: Proxy;
  const images: BuiltImage[] = [];
  const verifiedZtocs = new Set<string>();
  const cacheA = join(work.path, 'cache-a');
  const cacheB = join(work.path, 'cache-b');

  before(async () => {
    registry = await startRegistry();
    for (let i = 1; i <= 9; i++) {
      const img = await faultImage(i);
      images.push(img);
      await pushImage(img, { registry: registry.url, repo: `faults/s${i}`, tag: 'v1' });
    }
    faults = await startFaultProxy(registry.host);
    http = await startHttpUpstream(registry.host);
    viaTcp = await startProxy({ upstream: faults.url, dir: join(work.path, 'a'), extraArgs: [...ARGS, '--cache-dir', cacheA] });
    viaHttp = await startProxy({ upstream: http.url, dir: join(work.path, 'b'), extraArgs: [...ARGS, '--cache-dir', cacheB] });
  });
  after(async () => {
    t.faultsInjected = faults.injected + http.injected;
    t.crashes += (viaTcp.daemon.exited ? 1 : 0) + (viaHttp.daemon.exited ? 1 : 0);
    record('upstream', t);
    await viaTcp?.stop();
    await viaHttp?.stop();
    await faults?.close();
    await http?.close();
    await registry?.stop();
    work.remove();
  });

  const layerOf = (img: BuiltImage): string => img.layers[0]!.descriptor.digest;
  const layerPath = (img: BuiltImage): RegExp => new RegExp(`/blobs/${layerOf(img)}$`);

  /** No zTOC in a cache dir but those of SOCI indexes already verified span by span. Upstream layers kept
   * by the pull-through blob cache are binary too; auditCacheDir has checked that each hashes to its name. */
  const auditNoUnverifiedZtoc = (dir: string): void => {
    const layers = new Set(images.flatMap((i) => i.layers.map((l) => l.descriptor.digest)));
    for (const z of auditCacheDir(dir).binary) assert.ok(verifiedZtocs.has(z) || layers.has(z), `cache holds zTOC ${z} that no verified SOCI index references`);
  };

  const expectSoci = async (proxy: Proxy, repo: string, img: BuiltImage, afterFirst?: () => void): Promise<void> => {
    const r = await get(`${proxy.url}/v2/${repo}/manifests/v1`, { accept: ACCEPT });
    afterFirst?.();
    judge(t, r, undefined);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), MediaType.ociIndex, 'the SOCI-enabled index is served once the fault is gone');
    assert.equal(r.headers.get('docker-content-digest'), sha(r.body));
    for (const z of await verifySoci(proxy.url, repo, r.body, img)) verifiedZtocs.add(z);
  };

  const expectOriginal = async (proxy: Proxy, repo: string, img: BuiltImage): Promise<void> => {
    const r = await get(`${proxy.url}/v2/${repo}/manifests/v1`, { accept: ACCEPT });
    assert.ok(judge(t, r, img.manifestBytes), `original manifest served while indexing fails (status ${r.status} ${r.error ?? ''})`);
    assert.equal(r.headers.get('docker-content-digest'), img.descriptor.digest);
  };

  const damaging: Array<[string, Fault]> = [
    ['flipped byte', { mode: 'flip', offset: 100_000 }],
    ['reset mid-body', { mode: 'reset', afterBytes: 150_000 }],
    ['truncated body (correct Content-Length, then close)', { mode: 'truncate', afterBytes: 200_000 }],
  ];
  damaging.forEach(([name, fault], i) => {
    test(`indexing through a ${name}: original served, no zTOC from bad bytes, retried later and correct`, async () => {
      const img = images[i]!;
      const repo = `faults/s${i + 1}`;
      faults.setRules([{ match: layerPath(img), fault }]);
      const before = faults.injected;
      await expectOriginal(viaTcp, repo, img);
      assert.ok(faults.injected > before, 'the fault hit the layer fetch');
      auditNoUnverifiedZtoc(cacheA);
      // Inside the retry window the failure record keeps the original (no refetch per request).
      faults.clearRules();
      await expectOriginal(viaTcp, repo, img);
      await sleep(1200);
      const fetchesBefore = faults.requests.filter((q) => layerPath(img).test(q.path) && q.method === 'GET').length;
      await expectSoci(viaTcp, repo, img);
      const fetchesAfter = faults.requests.filter((q) => layerPath(img).test(q.path) && q.method === 'GET').length;
      assert.ok(fetchesAfter > fetchesBefore, 'the failed layer was indexed again on a later request');
      auditNoUnverifiedZtoc(cacheA);
    });
  });

  test('indexing through a stall (1.5 s) and a slow trickle still yields a correct SOCI index', async () => {
    const rules = [
      { match: layerPath(images[3]!), fault: { mode: 'stall', ms: 1500, atByte: 40_000 } as Fault, times: 1 },
      { match: layerPath(images[4]!), fault: { mode: 'trickle', bytesPerTick: 32 * 1024, intervalMs: 25 } as Fault, times: 1 },
    ];
    faults.setRules(rules);
    await expectSoci(viaTcp, 'faults/s4', images[3]!);
    await expectSoci(viaTcp, 'faults/s5', images[4]!);
    faults.clearRules();
    auditNoUnverifiedZtoc(cacheA);
  });

  test('blobs passed through to clients: damaged transfers fail, never finish with wrong bytes', async () => {
    const img = images[0]!;
    const url = `${viaTcp.url}/v2/faults/s1/blobs/${layerOf(img)}`;
    const blob = img.layers[0]!.blob;
    const cases: Fault[] = [
      { mode: 'flip', offset: 5 },
      { mode: 'flip', offset: blob.length - 1 },
      { mode: 'reset', afterBytes: 70_000 },
      { mode: 'truncate', afterBytes: blob.length - 1 },
      { mode: 'stall', ms: 800, atByte: 1000 },
      { mode: 'trickle', bytesPerTick: 64 * 1024, intervalMs: 10 },
    ];
    const cached = join(cacheA, 'blobs', 'sha256', layerOf(img).slice(7));
    const dropCachedLayer = async (): Promise<void> => {
      // Its write commits just after a good response ended: wait for it (up to 2 s), then remove it.
      for (let i = 0; i < 40 && !existsSync(cached); i++) await sleep(50);
      rmSync(cached, { force: true });
    };
    for (const fault of cases) {
      // The layer was kept by the blob cache when it was indexed (and after each good request below):
      // drop the copy so that the damaged upstream transfer is what the client receives.
      await dropCachedLayer();
      faults.setRules([{ match: layerPath(img), fault, times: 1 }]);
      const r = await get(url);
      const ok = judge(t, r, blob);
      if (fault.mode === 'stall' || fault.mode === 'trickle') assert.ok(ok, `${fault.mode}: correct bytes, late`);
      else assert.ok(!ok && r.status !== -1, `${fault.mode}: a failed transfer (got status ${r.status})`);
      // The next request, without a fault, is whole and right.
      assert.ok(judge(t, await get(url), blob), 'the next request gets the right bytes');
    }
    // Ranged reads through a reset: an error or exactly the right slice.
    await dropCachedLayer();
    faults.setRules([{ match: layerPath(img), fault: { mode: 'reset', afterBytes: 100 }, times: 1 }]);
    const r = await get(url, { range: 'bytes=1000-50999' });
    if (r.status === 206) assert.ok(judge(t, r, blob.subarray(1000, 51000)));
    else judge(t, r, undefined);
    faults.clearRules();
    assert.equal(t.wrongBytes, 0);
  });

  test('5xx and 429 from upstream: retried or answered as clean OCI errors; indexing recovers', async () => {
    const s6 = images[5]!;
    const s7 = images[6]!;
    // Two 503s on the layer: the upstream client retries, the SOCI index is built on the first request.
    let n503 = 0;
    http.setHandler((q) => (q.method === 'GET' && q.path.endsWith(layerOf(s6)) && n503++ < 2 ? { status: 503, body: '{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}' } : undefined));
    await expectSoci(viaHttp, 'faults/s6', s6);
    // 503 on every try: original served; after the fault and the retry window, SOCI.
    http.setHandler((q) => (q.path.endsWith(layerOf(s7)) && q.method === 'GET' ? { status: 503, headers: { 'Retry-After': '0' }, body: '{"errors":[{"code":"UNAVAILABLE","message":"down"}]}' } : undefined));
    await expectOriginal(viaHttp, 'faults/s7', s7);
    auditNoUnverifiedZtoc(cacheB);
    http.setHandler(undefined);
    await sleep(1200);
    await expectSoci(viaHttp, 'faults/s7', s7);
    // 429 + Retry-After on the tag: the client gets 429 with an OCI error body.
    http.setHandler((q) => (q.path.includes('/manifests/') ? { status: 429, headers: { 'Retry-After': '7', 'Content-Type': 'application/json' }, body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' } : undefined));
    const r429 = await get(`${viaHttp.url}/v2/faults/s8/manifests/v1`, { accept: ACCEPT });
    judge(t, r429, undefined);
    assert.equal(r429.status, 429);
    // 500 on manifests: a clean 5xx OCI error.
    http.setHandler((q) => (q.path.includes('/manifests/') ? { status: 500, body: 'internal' } : undefined));
    const r500 = await get(`${viaHttp.url}/v2/faults/s8/manifests/v1`, { accept: ACCEPT });
    judge(t, r500, undefined);
    assert.ok(r500.status >= 500 && r500.status < 600, `got ${r500.status}`);
    http.setHandler(undefined);
    await expectSoci(viaHttp, 'faults/s8', images[7]!);
    auditNoUnverifiedZtoc(cacheB);
  });

  test('the proxy stays up and its RSS stays bounded over 90 faulted requests', async () => {
    const img = images[8]!;
    const url = `${viaTcp.url}/v2/faults/s9/blobs/${layerOf(img)}`;
    const blob = img.layers[0]!.blob;
    const modes: Fault[] = [{ mode: 'reset', afterBytes: 50_000 }, { mode: 'flip', offset: 12_345 }, { mode: 'truncate', afterBytes: 250_000 }];
    const round = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i += 6) {
        faults.setRules([{ match: layerPath(img), fault: modes[(i / 6) % 3]!, times: 6 }]);
        const rs = await Promise.all(Array.from({ length: 6 }, () => get(url)));
        for (const r of rs) assert.ok(!judge(t, r, blob) && r.status !== -1 && r.status !== 200, `faulted transfer completed with status ${r.status}`);
      }
    };
    await round(30); // warm-up
    await sleep(300);
    const rss0 = rssOf(viaTcp.daemon.pid);
    await round(90);
    await sleep(300);
    const rss1 = rssOf(viaTcp.daemon.pid);
    faults.clearRules();
    assert.ok(judge(t, await get(url), blob));
    assert.ok(!viaTcp.daemon.exited && !viaHttp.daemon.exited, 'both proxies are still up');
    t.notes = `rss ${Math.round(rss0 / 2 ** 20)} -> ${Math.round(rss1 / 2 ** 20)} MiB over 90 faulted requests`;
    process.stdout.write(`# upstream faults: ${t.notes}\n`);
    assert.ok(rss1 - rss0 < 48 * 2 ** 20, t.notes);
  });
});
