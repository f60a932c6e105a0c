/**
 * The shared cache across real processes: two proxies sharing one real redis-server in front of one
 * docker-registry. The registry's own access log is the witness that every indexed layer was streamed for
 * indexing exactly once, whatever the number of concurrent first pulls and replicas; a third proxy started
 * afterwards serves the SOCI-enabled image without touching a layer blob; Redis going away leaves pulls
 * working; a restarted embedded-default proxy keeps its disk cache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { mixedImage, multiPlatformImage, pushImage, startProxy, startRedis, startRegistry, tempDir, type MixedImage, type Proxy, type Redis, type Registry } from './harness/index.js';
import { parseIndex, parseManifest } from '../src/oci/go-json.js';
import { Annotation, MediaType } from '../src/oci/media-types.js';

const HAVE_DIST = existsSync(new URL('../dist/cli.js', import.meta.url));
const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const ARGS = ['--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--log-level', 'warn'];

async function manifest(proxy: Proxy, repo: string, ref: string): Promise<{ digest: string; body: Uint8Array; status: number }> {
  const r = await fetch(`${proxy.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } });
  return { status: r.status, digest: r.headers.get('docker-content-digest') ?? '', body: new Uint8Array(await r.arrayBuffer()) };
}

async function ztocDigests(proxy: Proxy, repo: string, indexBytes: Uint8Array): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const d of parseIndex(indexBytes).manifests.filter((x) => x.artifactType === MediaType.sociIndexV2)) {
    const soci = parseManifest((await manifest(proxy, repo, d.digest)).body);
    for (const l of soci.layers) out.set(l.annotations![Annotation.imageLayerDigest]!, l.digest);
  }
  return out;
}

describe('fleet: two proxies, one Redis, one registry', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  let registry: Registry;
  let redis: Redis;
  const proxies: Proxy[] = [];
  let mixed: MixedImage;
  const work = tempDir('fleet');

  before(async () => {
    registry = await startRegistry();
    redis = await startRedis();
    mixed = await mixedImage();
    await pushImage(mixed, { registry: registry.url, repo: 'fleet/app', tag: 'latest' });
    for (const name of ['a', 'b']) {
      proxies.push(await startProxy({ upstream: registry.url, dir: join(work.path, name), extraArgs: [...ARGS, '--cache-dir', join(work.path, name, 'cache'), '--redis', redis.url] }));
    }
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    await redis?.stop();
    await registry?.stop();
    work.remove();
  });

  test('20 concurrent first pulls across two replicas stream each indexed layer exactly once', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => manifest(proxies[i % 2]!, 'fleet/app', 'latest')));
    const digests = new Set(results.map((r) => r.digest));
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(digests.size, 1, 'every client got the same SOCI-enabled index');
    const ztocs = await ztocDigests(proxies[0]!, 'fleet/app', results[0]!.body);
    assert.ok(ztocs.size >= 2, 'the gzip and the tar layer were indexed');
    await registry.settle();
    for (const layer of mixed.layers) {
      const served = registry.blobBytes(layer.descriptor.digest);
      if (ztocs.has(layer.descriptor.digest)) assert.equal(served, layer.blob.length, `layer ${layer.descriptor.digest} streamed once for indexing`);
    }
  });

  test('a third proxy sharing Redis serves the SOCI image without touching a layer blob', async () => {
    await registry.settle();
    const mark = registry.requests().length;
    const third = await startProxy({ upstream: registry.url, dir: join(work.path, 'c'), extraArgs: [...ARGS, '--cache-dir', join(work.path, 'c', 'cache'), '--redis', redis.url] });
    proxies.push(third);
    const r = await manifest(third, 'fleet/app', 'latest');
    assert.equal(r.status, 200);
    const ztocs = await ztocDigests(third, 'fleet/app', r.body);
    for (const z of ztocs.values()) {
      const b = await fetch(`${third.url}/v2/fleet/app/blobs/${z}`);
      assert.equal(b.status, 200);
      await b.arrayBuffer();
    }
    await registry.settle();
    const layerDigests = new Set(mixed.layers.map((l) => l.descriptor.digest));
    const touched = registry.requests().slice(mark).filter((e) => e.method === 'GET' && e.blob && layerDigests.has(e.blob));
    assert.deepEqual(touched, [], 'no layer blob was read');
  });

  test('Redis going away leaves pulls working (local tiers)', async () => {
    const multi = await multiPlatformImage();
    await pushImage(multi, { registry: registry.url, repo: 'fleet/multi', tag: 'latest' });
    await redis.kill();
    const r = await manifest(proxies[0]!, 'fleet/multi', 'latest');
    assert.equal(r.status, 200);
    assert.ok(parseIndex(r.body).manifests.some((d) => d.artifactType === MediaType.sociIndexV2), 'indexed without Redis');
  });
});

describe('embedded default: restart keeps the disk cache', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  test('a restarted proxy answers from its disk cache without re-reading layers', async () => {
    const work = tempDir('restart');
    const registry = await startRegistry();
    try {
      const mixed = await mixedImage();
      await pushImage(mixed, { registry: registry.url, repo: 'r/app', tag: 'latest' });
      const args = [...ARGS, '--cache-dir', join(work.path, 'cache')];
      let proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'p1'), extraArgs: args });
      const first = await manifest(proxy, 'r/app', 'latest');
      await proxy.stop();
      await registry.settle();
      const mark = registry.requests().length;
      proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'p2'), extraArgs: args });
      const second = await manifest(proxy, 'r/app', 'latest');
      await proxy.stop();
      assert.equal(second.digest, first.digest);
      await registry.settle();
      const layerDigests = new Set(mixed.layers.map((l) => l.descriptor.digest));
      assert.deepEqual(registry.requests().slice(mark).filter((e) => e.method === 'GET' && e.blob && layerDigests.has(e.blob)), []);
    } finally {
      await registry.stop();
      work.remove();
    }
  });
});
