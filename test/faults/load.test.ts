/**
 * Sustained mixed load on loopback for a bounded time: many concurrent clients pulling manifests (tag,
 * cold then warm: the first ones trigger indexing) and ranged and whole blobs through the proxy from
 * docker-registry. Every byte of every answer is checked against the source; reports the error rate, p99
 * latency and the proxy's RSS.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pushImage, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry } from '../harness/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { ACCEPT, faultImage, get, judge, percentile, rssOf, sha } from './common.js';
import { record, tally } from './summary.js';

const HAVE_DIST = existsSync(new URL('../../dist/cli.js', import.meta.url));
const DURATION_MS = 12_000;
const CLIENTS = 24;

describe('load', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  const t = tally();
  const work = tempDir('faults-load');
  let registry: Registry;
  let proxy: Proxy;
  const images: BuiltImage[] = [];

  before(async () => {
    registry = await startRegistry();
    for (let i = 1; i <= 4; i++) {
      const img = await faultImage(500 + i);
      images.push(img);
      await pushImage(img, { registry: registry.url, repo: `load/s${i}`, tag: 'v1' });
    }
    proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'p'), extraArgs: ['--cache-dir', join(work.path, 'cache'), '--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'warn'] });
  });
  after(async () => {
    t.crashes += proxy?.daemon.exited ? 1 : 0;
    record('load', t);
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test(`${CLIENTS} clients for ${DURATION_MS / 1000} s: zero wrong bytes, bounded latency`, async () => {
    const lat: number[] = [];
    let errors = 0;
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const rss0 = rssOf(proxy.daemon.pid);
    const end = Date.now() + DURATION_MS;
    const client = async (): Promise<void> => {
      while (Date.now() < end) {
        const i = rnd(images.length);
        const img = images[i]!;
        const repo = `load/s${i + 1}`;
        const kind = rnd(10);
        const t0 = performance.now();
        let ok: boolean;
        if (kind < 3) {
          const r = await get(`${proxy.url}/v2/${repo}/manifests/v1`, { accept: ACCEPT }, 30_000);
          if (r.headers.get('docker-content-digest') === img.descriptor.digest) ok = judge(t, r, img.manifestBytes);
          else {
            judge(t, r, undefined);
            ok = r.status === 200 && r.headers.get('content-type') === MediaType.ociIndex && sha(r.body) === r.headers.get('docker-content-digest');
            if (r.status === 200 && !ok) t.wrongBytes++;
          }
        } else if (kind < 8) {
          const layer = img.layers[0]!.blob;
          const start = rnd(layer.length - 1);
          const len = 1 + rnd(Math.min(64 * 1024, layer.length - start));
          const r = await get(`${proxy.url}/v2/${repo}/blobs/${img.layers[0]!.descriptor.digest}`, { range: `bytes=${start}-${start + len - 1}` }, 30_000);
          ok = judge(t, r, layer.subarray(start, start + len));
        } else {
          const l = img.layers[kind === 8 ? 1 : 0]!;
          ok = judge(t, await get(`${proxy.url}/v2/${repo}/blobs/${l.descriptor.digest}`, {}, 30_000), l.blob);
        }
        lat.push(performance.now() - t0);
        if (!ok) errors++;
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, client));
    const rss1 = rssOf(proxy.daemon.pid);
    t.p99Ms = percentile(lat, 99);
    const rate = errors / Math.max(1, lat.length);
    t.notes = `${lat.length} requests in ${DURATION_MS / 1000} s (${Math.round(lat.length / (DURATION_MS / 1000))}/s), error rate ${(rate * 100).toFixed(2)}%, p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${t.p99Ms.toFixed(1)} ms, rss ${Math.round(rss0 / 2 ** 20)} -> ${Math.round(rss1 / 2 ** 20)} MiB`;
    process.stdout.write(`# load: ${t.notes}\n`);
    assert.equal(t.wrongBytes, 0);
    assert.equal(t.hangs, 0);
    assert.equal(errors, 0, 'no errors without faults');
    assert.ok(!proxy.daemon.exited);
  });
});
