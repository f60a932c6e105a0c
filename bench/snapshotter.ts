/**
 * Snapshotter bench, one run. Image `bench/python`: the harness python image's two layers (python3.11 +
 * stdlib slice) plus one large layer the command never reads, as a real python image carries (a copy of
 * the host's /usr/share: ~790 MB of tar, ~58k files, ~277 MB gzip, cached under .cache/bench). (1) Time to
 * the first output of `python3.11 -c 'import json; print(1)'` run by chroot in a lazily mounted rootfs
 * (`node dist/cli.js mount` through the proxy, cold span cache) against downloading every layer blob whole
 * from the registry (concurrently) and unpacking them (`tar -x` with pigz) — the same image in both cases —
 * with the layer bytes the registry served in each case; the proxy's SOCI index build for the image (once
 * per image, before any client) is timed separately. (2) Time to read every file of that large layer
 * through a lazy mount of it alone against the same tree on local disk (`tar cf - DIR | wc -c`, warm page
 * cache), cold span cache and a second pass. Needs root, /dev/fuse and dist/ (npm run build).
 * Run: `node --import tsx bench/snapshotter.ts`. Writes bench/results/snapshotter.json and .md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  buildImage, pushImage, pythonImage, randomBytes, runCommand, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry,
} from '../test/harness/index.js';

const ROOT = new URL('..', import.meta.url).pathname;
const CACHE = join(ROOT, '.cache', 'bench');
const work = tempDir('snap-bench');
const cli = async (args: string[]): Promise<void> => {
  const r = await runCommand(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd: ROOT, timeoutMs: 900_000 });
  if (r.code) throw new Error(`soci-proxy ${args[0]}: ${r.stderr}`);
};
const now = (): number => performance.now();

async function buildImageIndex(proxy: Proxy, repo: string): Promise<void> {
  const r = await fetch(`${proxy.url}/v2/${repo}/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' }, signal: AbortSignal.timeout(900_000) });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`GET manifest ${repo}: ${r.status}`);
}

async function firstOutput(rootfs: string): Promise<string> {
  return (await runCommand('chroot', [rootfs, '/usr/bin/python3.11', '-c', 'import json; print(1)'], { timeoutMs: 60_000 })).stdout.trim();
}

async function pythonCase(registry: Registry, proxy: Proxy, image: BuiltImage): Promise<Record<string, number>> {
  const total = image.layers.reduce((n, l) => n + l.blob.length, 0);
  // lazy
  let mark = registry.requests().length;
  const mp = join(work.path, 'py');
  const t0 = now();
  await cli(['mount', 'bench/python:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-py'), '--detach', '--bg-fetch-period-ms', '0']);
  const mounted = now();
  if ((await firstOutput(mp)) !== '1') throw new Error('lazy python printed something else');
  const lazyMs = now() - t0;
  await registry.settle();
  const lazyBytes = image.layers.reduce((n, l) => n + registry.blobBytes(l.descriptor.digest, mark), 0);
  await cli(['unmount', mp]);
  // full: every blob whole from the registry, unpacked with tar, then run
  mark = registry.requests().length;
  const dir = join(work.path, 'full');
  mkdirSync(dir, { recursive: true });
  const t1 = now();
  for (const [i, l] of image.layers.entries()) {
    const res = await fetch(`${registry.url}/v2/bench/python/blobs/${l.descriptor.digest}`);
    const file = join(work.path, `layer-${i}.tgz`);
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    await runCommand('tar', ['-x', '-f', file, '-C', dir, '--numeric-owner']);
  }
  if ((await firstOutput(dir)) !== '1') throw new Error('unpacked python printed something else');
  const fullMs = now() - t1;
  await registry.settle();
  const fullBytes = image.layers.reduce((n, l) => n + registry.blobBytes(l.descriptor.digest, mark), 0);
  return { imageBytes: total, lazyMs, lazyMountMs: mounted - t0, lazyBytes, fullMs, fullBytes, ratioTime: lazyMs / fullMs, ratioBytes: lazyBytes / fullBytes };
}

/** A ≥400 MB layer: /usr/share copied, tarred and gzipped once, cached under .cache/bench. */
async function bigLayer(): Promise<{ tgz: string; dir: string }> {
  const tgz = join(CACHE, 'usr-share.tar.gz');
  const dir = join(CACHE, 'usr-share');
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(tgz)) {
    await runCommand('sh', ['-c', `tar -C / --numeric-owner --format=pax -cf - usr/share | pigz -p 2 > ${tgz}.tmp && mv ${tgz}.tmp ${tgz}`], { timeoutMs: 900_000 });
  }
  if (!existsSync(dir)) {
    mkdirSync(`${dir}.tmp`, { recursive: true });
    await runCommand('tar', ['-x', '-f', tgz, '-C', `${dir}.tmp`, '--numeric-owner'], { timeoutMs: 900_000 });
    await runCommand('mv', [`${dir}.tmp`, dir]);
  }
  return { tgz, dir };
}

async function readAll(dir: string): Promise<{ ms: number; bytes: number }> {
  const t = now();
  const out = await runCommand('sh', ['-c', `tar -C ${dir} -cf - . | wc -c`], { timeoutMs: 900_000 });
  return { ms: now() - t, bytes: Number(out.stdout.trim()) };
}

async function main(): Promise<void> {
  const registry = await startRegistry({ dir: join(work.path, 'registry') });
  const proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy'), extraArgs: ['--cache-dir', join(work.path, 'proxy-cache'), '--min-layer-size', '65536', '--span-size', '1048576', '--index-mode', 'wait', '--log-level', 'warn'], timeoutMs: 60_000 });
  try {
    // python: the harness image plus a layer of files python never reads, as real images have.
    const py = await pythonImage();
    const unused: Record<string, Uint8Array> = {};
    for (let i = 0; i < 48; i++) unused[`usr/share/unused/blob-${i}.bin`] = randomBytes(1024 * 1024, 500 + i);
    const image = await buildImage({ tag: 'bench-py', layers: [...py.layers.map((l) => ({ tarGz: l.blob })), { files: unused }] });
    await pushImage(image, { registry: registry.url, repo: 'bench/python', tag: 'latest' });
    await buildImageIndex(proxy, 'bench/python');
    await registry.settle();
    const python = await pythonCase(registry, proxy, image);
    console.log('python', python);

    const { tgz, dir } = await bigLayer();
    const big = await buildImage({ tag: 'bench-big', layers: [{ tarGz: readFileSync(tgz) }] });
    await pushImage(big, { registry: registry.url, repo: 'bench/big', tag: 'latest' });
    const ti = now();
    await buildImageIndex(proxy, 'bench/big');
    const indexMs = now() - ti;
    const mp = join(work.path, 'big');
    await cli(['mount', 'bench/big:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-big'), '--detach', '--bg-fetch-period-ms', '0']);
    const files = Number(execFileSync('sh', ['-c', `find ${dir} -type f | wc -l`]).toString().trim());
    const local = await readAll(dir);
    const lazy = await readAll(join(mp, 'usr', 'share'));
    const again = await readAll(join(mp, 'usr', 'share'));
    await cli(['unmount', mp]);
    const largeLayer = {
      compressedBytes: big.layers[0]?.blob.length, uncompressedBytes: big.layers[0]?.tar.length, files, proxyIndexMs: indexMs,
      localMs: local.ms, lazyColdMs: lazy.ms, lazyWarmMs: again.ms, tarBytesLocal: local.bytes, tarBytesLazy: lazy.bytes, ratio: lazy.ms / local.ms,
    };
    console.log('large layer', largeLayer);

    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT }).toString().trim();
    const machine = `${cpus().length}× ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`;
    const result = { commit, node: process.version, machine, date: new Date().toISOString(), python, largeLayer };
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench', 'results', 'snapshotter.json'), `${JSON.stringify(result, null, 2)}\n`);
    const mb = (n: number | undefined): string => `${((n ?? 0) / 1e6).toFixed(1)} MB`;
    const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    writeFileSync(join(ROOT, 'bench', 'results', 'snapshotter.md'), `# Snapshotter bench

commit ${commit}, node ${process.version}, ${machine}. \`node --import tsx bench/snapshotter.ts\`; registry, proxy and
mount process on loopback in one run.

## python3.11 first output (image: ${mb(python.imageBytes)} of layers)

| | time to first output | registry bytes |
|---|---|---|
| lazy (\`soci-proxy mount\` + chroot) | ${s(python.lazyMs ?? 0)} (mount ${s(python.lazyMountMs ?? 0)}) | ${mb(python.lazyBytes)} |
| full (fetch every blob, tar x, chroot) | ${s(python.fullMs ?? 0)} | ${mb(python.fullBytes)} |
| ratio (target ≤ 0.1 time) | ${(python.ratioTime ?? 0).toFixed(2)} | ${(python.ratioBytes ?? 0).toFixed(2)} |

## Every file of one large layer (/usr/share: ${mb(largeLayer.uncompressedBytes)} tar, ${files} files, ${mb(largeLayer.compressedBytes)} gzip)

| | \`tar cf - DIR \\| wc -c\` |
|---|---|
| local disk (warm page cache) | ${s(local.ms)} |
| lazy mount, cold span cache | ${s(lazy.ms)} |
| lazy mount, second pass | ${s(again.ms)} |
| ratio cold/local (target ≤ 5) | ${largeLayer.ratio.toFixed(2)} |

Proxy indexing of the layer (first GET of the manifest): ${s(indexMs)}.
`);
  } finally {
    await proxy.stop();
    await registry.stop();
    work.remove();
  }
}

await main();
