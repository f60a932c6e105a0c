/**
 * Cache benchmark: what the artifact cache saves on the way to a SOCI-enabled image, in one run against a
 * local docker-registry and redis-server (test/harness), the proxy as real processes (dist/cli.js serve,
 * `--index-mode wait`, default 4 MiB spans and 10 MiB minimum layer size).
 *   npm run build && node --import tsx bench/cache.ts
 * Image 1: 4 gzip layers of about 20–40 MB (files of 1–4 MiB, mixed random bytes and word text). Time to
 * the SOCI-enabled index (GET by tag, until the body is read) through: a fresh proxy (cold: every layer
 * streamed and indexed); the same proxy again (memory tier); a fresh process on the same disk cache without
 * Redis (disk tier); a fresh process with an empty disk sharing Redis (Redis tier). Baselines in the same
 * run: the upstream manifest GET direct from the registry, and reading the 4 layer blobs direct from the
 * registry (the floor of a cold build). Image 2 = image 1's first 3 layers + 1 new layer: indexed on the
 * disk-cache proxy; layers reused vs indexed from its /metrics (soci_proxy_cache_lookups_total{kind="layer"})
 * and the layer blobs read from the registry's access log. Writes bench/results/cache.json and cache.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { buildImage, pushImage, randomBytes, startProxy, startRedis, startRegistry, tempDir, textBytes, type BuiltImage, type LayerSpec, type Proxy, type Registry } from '../test/harness/index.js';
import { MediaType } from '../src/oci/media-types.js';

const MiB = 1 << 20;
const RESULTS = new URL('./results/', import.meta.url);
const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const ARGS = ['--index-mode', 'wait', '--index-wait', '600', '--log-level', 'warn'];

/** A layer of `randomMiB` MiB of random files and `textMiB` MiB of text files, 1–4 MiB each. */
function layer(seed: number, randomMiB: number, textMiB: number): LayerSpec {
  const files: Record<string, Uint8Array> = {};
  let i = 0;
  for (let left = randomMiB; left > 0; i++) {
    const n = Math.min(left, 1 + (i % 4));
    files[`l${seed}/bin/r${i}.bin`] = randomBytes(n * MiB, seed * 1000 + i);
    left -= n;
  }
  for (let left = textMiB; left > 0; i++) {
    const n = Math.min(left, 1 + (i % 4));
    files[`l${seed}/src/t${i}.txt`] = textBytes(n * MiB, seed * 1000 + i);
    left -= n;
  }
  return { files };
}

async function timeGet(url: string): Promise<{ ms: number; digest: string; mediaType: string }> {
  const t0 = performance.now();
  const r = await fetch(url, { headers: { accept: ACCEPT } });
  await r.arrayBuffer();
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
  return { ms, digest: r.headers.get('docker-content-digest') ?? '', mediaType: r.headers.get('content-type') ?? '' };
}

async function layerLookups(proxy: Proxy): Promise<{ hit: number; miss: number }> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  const get = (result: string): number => {
    const line = text.split('\n').find((l) => l.startsWith('soci_proxy_cache_lookups_total{') && l.includes('kind="layer"') && l.includes(`result="${result}"`));
    return line ? Number(line.slice(line.indexOf('}') + 1)) : 0;
  };
  return { hit: get('hit'), miss: get('miss') };
}

/** Layer blob GETs logged after entry `from`: how many, and how many bytes. */
async function layerReads(registry: Registry, image: BuiltImage, from: number): Promise<{ requests: number; bytes: number; layers: number }> {
  await registry.settle();
  const digests = new Set(image.layers.map((l) => l.descriptor.digest));
  const reads = registry.requests().slice(from).filter((e) => e.method === 'GET' && e.blob && digests.has(e.blob));
  return { requests: reads.length, bytes: reads.reduce((n, e) => n + e.bytes, 0), layers: new Set(reads.map((e) => e.blob)).size };
}

async function main(): Promise<void> {
  if (!existsSync(new URL('../dist/cli.js', import.meta.url))) throw new Error('run `npm run build` first');
  const work = tempDir('bench-cache');
  const registry = await startRegistry();
  const redis = await startRedis();
  const running: Proxy[] = [];
  const start = async (name: string, cacheDir: string, withRedis: boolean): Promise<Proxy> => {
    const p = await startProxy({ upstream: registry.url, dir: join(work.path, name), extraArgs: [...ARGS, '--cache-dir', cacheDir, ...(withRedis ? ['--redis', redis.url] : [])], timeoutMs: 60_000 });
    running.push(p);
    return p;
  };
  try {
    console.log('building images…');
    const base = [layer(1, 20, 8), layer(2, 24, 12), layer(3, 16, 16)];
    const img1 = await buildImage({ tag: 'one', layers: [...base, layer(4, 30, 8)], config: { cmd: ['/bin/sh'] } });
    const img2 = await buildImage({ tag: 'two', layers: [...base, layer(5, 22, 8)], config: { cmd: ['/bin/sh'] } });
    await pushImage(img1, { registry: registry.url, repo: 'bench/one', tag: 'latest' });
    await pushImage(img2, { registry: registry.url, repo: 'bench/two', tag: 'latest' });
    const layerMB = img1.layers.map((l) => +(l.blob.length / 1e6).toFixed(1));
    console.log(`image 1 layers (MB, gzip): ${layerMB.join(', ')}; image 2 new layer ${(img2.layers[3]!.blob.length / 1e6).toFixed(1)} MB`);

    // Baselines: the upstream manifest, and the layer bytes a cold build must read.
    const upstreamManifest = await timeGet(`${registry.url}/v2/bench/one/manifests/latest`);
    const t0 = performance.now();
    for (const l of img1.layers) await (await fetch(`${registry.url}/v2/bench/one/blobs/${l.descriptor.digest}`)).arrayBuffer();
    const readLayersMs = performance.now() - t0;

    const diskA = join(work.path, 'cache-a');
    let mark = (await registry.settle(), registry.requests().length);
    const p1 = await start('p1', diskA, true);
    const cold = await timeGet(`${p1.url}/v2/bench/one/manifests/latest`);
    if (cold.mediaType !== MediaType.ociIndex) throw new Error(`cold answer is ${cold.mediaType}, not a SOCI-enabled index`);
    const coldReads = await layerReads(registry, img1, mark);
    const warmMemory = await timeGet(`${p1.url}/v2/bench/one/manifests/latest`);
    await p1.stop();

    mark = registry.requests().length;
    const p2 = await start('p2', diskA, false);
    const warmDisk = await timeGet(`${p2.url}/v2/bench/one/manifests/latest`);
    const diskReads = await layerReads(registry, img1, mark);

    mark = registry.requests().length;
    const p3 = await start('p3', join(work.path, 'cache-c'), true);
    const warmRedis = await timeGet(`${p3.url}/v2/bench/one/manifests/latest`);
    const redisReads = await layerReads(registry, img1, mark);
    await p3.stop();
    for (const w of [warmMemory, warmDisk, warmRedis]) if (w.digest !== cold.digest) throw new Error('a warm answer differs from the cold one');

    // Image 2 shares image 1's base layers: index it on the disk-cache proxy.
    const before = await layerLookups(p2);
    mark = registry.requests().length;
    const second = await timeGet(`${p2.url}/v2/bench/two/manifests/latest`);
    if (second.mediaType !== MediaType.ociIndex) throw new Error(`image 2 answer is ${second.mediaType}`);
    const afterLookups = await layerLookups(p2);
    const secondReads = await layerReads(registry, img2, mark);
    await p2.stop();
    const reused = afterLookups.hit - before.hit;
    const indexed = afterLookups.miss - before.miss;

    let commit = 'unknown';
    try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { /* not a checkout */ }
    const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() !== '';
    const machine = { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', nproc: cpus().length, memGiB: +(totalmem() / 1024 ** 3).toFixed(1) };
    const ms = (x: number): number => +x.toFixed(1);
    const totalMB = img1.layers.reduce((n, l) => n + l.blob.length, 0) / 1e6;
    const result = {
      commit: dirty ? `${commit}+uncommitted` : commit,
      date: new Date().toISOString(),
      ...machine,
      image1: { layersMB: layerMB, totalMB: +totalMB.toFixed(1) },
      image2: { sharedLayers: 3, newLayerMB: +(img2.layers[3]!.blob.length / 1e6).toFixed(1) },
      baselines: { upstreamManifestMs: ms(upstreamManifest.ms), readAllLayersMs: ms(readLayersMs), readAllLayersMBps: +(totalMB / (readLayersMs / 1000)).toFixed(1) },
      timeToSociIndexMs: {
        cold: ms(cold.ms),
        warmSameProcess: ms(warmMemory.ms),
        warmNewProcessSameDisk: ms(warmDisk.ms),
        warmNewProcessSharedRedisEmptyDisk: ms(warmRedis.ms),
      },
      layerBlobReads: { cold: coldReads, newProcessSameDisk: diskReads, sharedRedisEmptyDisk: redisReads },
      sharedBase: { timeToSociIndexMs: ms(second.ms), layersReused: reused, layersIndexed: indexed, hitRatio: +(reused / Math.max(1, reused + indexed)).toFixed(2), layerBlobReads: secondReads },
    };
    console.log(JSON.stringify(result, null, 2));
    writeFileSync(new URL('cache.json', RESULTS), JSON.stringify(result, null, 2) + '\n');
    const t = result.timeToSociIndexMs;
    const md = [
      '# cache benchmark',
      '',
      `\`node --import tsx bench/cache.ts\` — commit ${result.commit}, ${result.date}, node ${machine.node}, ${machine.cpu} × ${machine.nproc} (nproc), ${machine.memGiB} GiB; one run; local docker-registry and redis-server on loopback.`,
      '',
      `Image 1: 4 gzip layers of ${layerMB.join(', ')} MB (${result.image1.totalMB} MB). Image 2: image 1's first 3 layers + a new ${result.image2.newLayerMB} MB layer.`,
      '',
      '| time to the SOCI-enabled index (GET by tag) | ms | layer blobs read upstream |',
      '| --- | ---: | ---: |',
      `| baseline: upstream manifest GET, direct | ${result.baselines.upstreamManifestMs} | – |`,
      `| baseline: read the 4 layer blobs, direct (${result.baselines.readAllLayersMBps} MB/s) | ${result.baselines.readAllLayersMs} | 4 |`,
      `| cold: fresh proxy, empty caches | ${t.cold} | ${coldReads.layers} (${(coldReads.bytes / 1e6).toFixed(1)} MB) |`,
      `| warm: same process, second GET | ${t.warmSameProcess} | 0 |`,
      `| warm: new process, same disk cache, no Redis | ${t.warmNewProcessSameDisk} | ${diskReads.layers} |`,
      `| warm: new process, empty disk, shared Redis | ${t.warmNewProcessSharedRedisEmptyDisk} | ${redisReads.layers} |`,
      '',
      `Image 2 through the disk-cache proxy: ${result.sharedBase.timeToSociIndexMs} ms to its SOCI-enabled index; layers reused ${reused}, indexed ${indexed} (hit ratio ${result.sharedBase.hitRatio}, from soci_proxy_cache_lookups_total{kind="layer"}); layer blobs read upstream: ${secondReads.layers} (${(secondReads.bytes / 1e6).toFixed(1)} MB).`,
      '',
    ].join('\n');
    writeFileSync(new URL('cache.md', RESULTS), md);
    console.log(md);
  } finally {
    for (const p of running) await p.stop().catch(() => undefined);
    await redis.stop();
    await registry.stop();
    work.remove();
  }
}

await main();
