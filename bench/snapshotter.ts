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
 * cache), cold span cache and a second pass. (1) goes through a proxy with `--no-cache-blobs`, so every span
 * read is a registry read the registry's log counts; (2) through a second proxy in its default
 * configuration, which keeps the layer it read while indexing and serves the spans from that copy, as a
 * deployed proxy does (bytes counted from its `soci_proxy_bytes_served_total`). Needs root, /dev/fuse and
 * dist/ (npm run build).
 * Run: `node --import tsx bench/snapshotter.ts [--case python|big|all] [--span-size N]`. Writes
 * bench/results/snapshotter.json and .md (with `--case python` or `big`, the other part's figures are
 * taken over from the previous snapshotter.json, and the .md says which part was not re-run).
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  buildImage, pushImage, pythonImage, runCommand, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry,
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

const layerBytes = (registry: Registry, image: BuiltImage, mark: number): number =>
  image.layers.reduce((n, l) => n + registry.blobBytes(l.descriptor.digest, mark), 0);

interface PythonResult {
  imageBytes: number; lazyMs: number; lazyMountMs: number; lazyBytes: number;
  fullMs: number; fullDownloadMs: number; fullBytes: number; ratioTime: number; ratioBytes: number;
}

async function pythonCase(registry: Registry, proxy: Proxy, image: BuiltImage): Promise<PythonResult> {
  const total = image.layers.reduce((n, l) => n + l.blob.length, 0);
  // lazy: mount through the proxy (cold span cache, background fill off), chroot, first output
  let mark = registry.requests().length;
  const mp = join(work.path, 'py');
  const t0 = now();
  await cli(['mount', 'bench/python:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-py'), '--detach', '--bg-fetch-period-ms', '0', '--log-level', 'warn']);
  const mounted = now();
  if ((await firstOutput(mp)) !== '1') throw new Error('lazy python printed something else');
  const lazyMs = now() - t0;
  await registry.settle();
  const lazyBytes = layerBytes(registry, image, mark);
  await cli(['unmount', mp]);
  // full: every blob whole from the registry (concurrently, as containerd pulls), unpacked in order, then run
  mark = registry.requests().length;
  const dir = join(work.path, 'full');
  mkdirSync(dir, { recursive: true });
  const t1 = now();
  const files = await Promise.all(image.layers.map(async (l, i) => {
    const res = await fetch(`${registry.url}/v2/bench/python/blobs/${l.descriptor.digest}`);
    if (res.status !== 200 || res.body === null) throw new Error(`GET blob: ${res.status}`);
    const file = join(work.path, `layer-${i}.tgz`);
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(file));
    return file;
  }));
  const downloaded = now();
  for (const file of files) await runCommand('tar', ['-x', '-I', 'pigz', '-f', file, '-C', dir, '--numeric-owner'], { timeoutMs: 900_000 });
  if ((await firstOutput(dir)) !== '1') throw new Error('unpacked python printed something else');
  const fullMs = now() - t1;
  await registry.settle();
  const fullBytes = layerBytes(registry, image, mark);
  await runCommand('rm', ['-rf', dir, ...files]);
  return {
    imageBytes: total, lazyMs, lazyMountMs: mounted - t0, lazyBytes, fullMs, fullDownloadMs: downloaded - t1, fullBytes,
    ratioTime: lazyMs / fullMs, ratioBytes: lazyBytes / fullBytes,
  };
}

/** A large layer: /usr/share copied, tarred and gzipped once, cached under .cache/bench. */
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

/** `--span-size N` (default: soci's 4 MiB, as the containerd bench uses). */
const SPAN_SIZE = (() => {
  const i = process.argv.indexOf('--span-size');
  return i >= 0 ? Number(process.argv[i + 1]) : 4 * 1024 * 1024;
})();

/** `--case python|big|all` (default all): run only the python first-output case or only the large-layer case. */
const CASE = (() => {
  const i = process.argv.indexOf('--case');
  const c = i >= 0 ? process.argv[i + 1] : 'all';
  if (c !== 'python' && c !== 'big' && c !== 'all') throw new Error(`--case must be python, big or all, not ${String(c)}`);
  return c;
})();

type PythonFigures = PythonResult & { proxyIndexMs: number; proxyIndexBytes: number };
interface LargeLayerFigures {
  compressedBytes: number | undefined; uncompressedBytes: number | undefined; files: number;
  localMs: number; lazyColdMs: number; lazyColdAgainMs?: number; lazyWarmMs: number; tarBytes: number; lazyRegistryBytes: number; lazyServedBytes?: number; ratio: number; ratioColdAgain?: number; ratioWarm: number;
}
interface Result { commit: string; node: string; machine: string; date: string; python: PythonFigures; largeLayer: LargeLayerFigures; rerun?: string }

async function pythonFigures(registry: Registry, proxy: Proxy, bigBlob: Buffer): Promise<PythonFigures> {
  const py = await pythonImage();
  const image = await buildImage({ tag: 'bench-py', layers: [...py.layers.map((l) => ({ tarGz: l.blob })), { tarGz: bigBlob }] });
  await pushImage(image, { registry: registry.url, repo: 'bench/python', tag: 'latest' });
  await registry.settle();
  const mark = registry.requests().length;
  const ti = now();
  await buildImageIndex(proxy, 'bench/python');
  const proxyIndexMs = now() - ti;
  await registry.settle();
  const proxyIndexBytes = layerBytes(registry, image, mark);
  return { ...(await pythonCase(registry, proxy, image)), proxyIndexMs, proxyIndexBytes };
}

/** Blob bytes the proxy has sent to clients (its Prometheus counter, all kinds). */
async function servedBytes(proxy: Proxy): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith('soci_proxy_bytes_served_total')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

async function largeLayerFigures(registry: Registry, proxy: Proxy, bigBlob: Buffer, dir: string, files: number): Promise<LargeLayerFigures> {
  // The same large layer alone, through a proxy in its default configuration (see the header).
  const big = await buildImage({ tag: 'bench-big', layers: [{ tarGz: bigBlob }] });
  await pushImage(big, { registry: registry.url, repo: 'bench/big', tag: 'latest' });
  await buildImageIndex(proxy, 'bench/big');
  await registry.settle();
  const mark = registry.requests().length;
  const served = await servedBytes(proxy);
  const mp = join(work.path, 'big');
  await cli(['mount', 'bench/big:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-big'), '--detach', '--bg-fetch-period-ms', '0', '--log-level', 'warn']);
  const localDir = join(dir, 'usr', 'share');
  await readAll(localDir); // warm the page cache
  const local = await readAll(localDir);
  const lazy = await readAll(join(mp, 'usr', 'share'));
  await registry.settle();
  const lazyRegistryBytes = layerBytes(registry, big, mark);
  const lazyServedBytes = (await servedBytes(proxy)) - served;
  const again = await readAll(join(mp, 'usr', 'share'));
  const list = (d: string): string => execFileSync('sh', ['-c', `cd ${d} && find . \\( -type d -printf '%p d %m\\n' \\) -o -printf '%p %y %s %m %n\\n' | LC_ALL=C sort`], { maxBuffer: 1 << 30 }).toString();
  const listing = { local: list(localDir), lazy: list(join(mp, 'usr', 'share')) };
  await cli(['unmount', mp]);
  // A second cold walk: a new mount over a new, empty span cache. Same work as the first; on this VM it runs
  // faster because the memory the first walk filled (span file and FUSE page cache, ~1.6 GB) was just freed
  // and is reused, where the first walk touched memory the guest had not used recently (see bench/README.md).
  const mp2 = join(work.path, 'big2');
  await cli(['mount', 'bench/big:latest', mp2, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-big2'), '--detach', '--bg-fetch-period-ms', '0', '--log-level', 'warn']);
  const lazy2 = await readAll(join(mp2, 'usr', 'share'));
  await cli(['unmount', mp2]);
  if (lazy2.bytes !== local.bytes) throw new Error(`tar stream sizes differ: local ${local.bytes}, second cold walk ${lazy2.bytes}`);
  if (listing.local !== listing.lazy) {
    writeFileSync('/tmp/snap-bench-listing.local', listing.local);
    writeFileSync('/tmp/snap-bench-listing.lazy', listing.lazy);
    throw new Error('file listings (path, type, size, mode, links) differ: see /tmp/snap-bench-listing.*');
  }
  if (local.bytes !== lazy.bytes || local.bytes !== again.bytes) throw new Error(`tar stream sizes differ: local ${local.bytes}, lazy ${lazy.bytes}, again ${again.bytes}`);
  return {
    compressedBytes: big.layers[0]?.blob.length, uncompressedBytes: big.layers[0]?.tar.length, files,
    localMs: local.ms, lazyColdMs: lazy.ms, lazyColdAgainMs: lazy2.ms, lazyWarmMs: again.ms, tarBytes: local.bytes, lazyRegistryBytes, lazyServedBytes, ratio: lazy.ms / local.ms, ratioColdAgain: lazy2.ms / local.ms, ratioWarm: again.ms / local.ms,
  };
}

function writeReport(result: Result): void {
  const { python, largeLayer } = result;
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'snapshotter.json'), `${JSON.stringify(result, null, 2)}\n`);
  const mb = (n: number | undefined): string => `${((n ?? 0) / 1e6).toFixed(1)} MB`;
  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const note = (part: 'python' | 'big'): string => (result.rerun === undefined || result.rerun === part ? '' : `\n(Not re-run in this run, \`--case ${result.rerun}\`: figures from the previous run.)\n`);
  writeFileSync(join(ROOT, 'bench', 'results', 'snapshotter.md'), `# Snapshotter bench

commit ${result.commit}, node ${result.node}, ${result.machine}, ${result.date}.
Command: \`npm run build && node --import tsx bench/snapshotter.ts${result.rerun ? ` --case ${result.rerun}` : ''}\` (the CLI runs from dist/cli.js). Docker-registry,
proxy (\`--span-size ${SPAN_SIZE} --min-layer-size 65536 --no-cache-blobs\`, so every span read reaches the registry and is counted) and mount process on loopback in one run, on a shared
2-core machine (other work may run at the same time: expect noise).

## python3.11 first output (same image for both cases: ${mb(python.imageBytes)} of gzip layers)
${note('python')}
Image \`bench/python\`: python3.11 + its libs, a stdlib slice, and one large layer the command never reads (a copy of
/usr/share: ${mb(largeLayer.uncompressedBytes)} tar, ${largeLayer.files} files, ${mb(largeLayer.compressedBytes)} gzip), as a
real python image carries. Command: \`chroot ROOTFS /usr/bin/python3.11 -c 'import json; print(1)'\`.

| | time to first output | layer bytes from registry |
|---|---|---|
| lazy (\`soci-proxy mount --detach\`, cold span cache, then chroot) | ${s(python.lazyMs)} (of which mount ${s(python.lazyMountMs)}) | ${mb(python.lazyBytes)} |
| full (download every blob concurrently, \`tar -x -I pigz\` each, then chroot) | ${s(python.fullMs)} (of which download ${s(python.fullDownloadMs)}) | ${mb(python.fullBytes)} |
| ratio lazy/full (target ≤ 0.1 time) | **${python.ratioTime.toFixed(3)}** | ${python.ratioBytes.toFixed(3)} |

Not in either time: the proxy's SOCI index build for the image (first GET of the manifest with \`--index-mode wait\`;
once per image, before any client): ${s(python.proxyIndexMs)}, ${mb(python.proxyIndexBytes)} of layer bytes read from the registry.

## Every file of one large layer (the /usr/share layer above, mounted alone)
${note('big')}
| | \`tar -C DIR -cf - . \\| wc -c\` | ratio to local |
|---|---|---|
| local disk (warm page cache) | ${s(largeLayer.localMs)} | 1 |
| lazy mount, cold span cache (${largeLayer.lazyServedBytes === undefined ? `${mb(largeLayer.lazyRegistryBytes)} from the registry` : `${mb(largeLayer.lazyServedBytes)} from the proxy's blob cache, ${mb(largeLayer.lazyRegistryBytes)} from the registry`}) | ${s(largeLayer.lazyColdMs)} | **${largeLayer.ratio.toFixed(2)}** (target ≤ 5) |
| lazy mount, second pass | ${s(largeLayer.lazyWarmMs)} | ${largeLayer.ratioWarm.toFixed(2)} |
${largeLayer.lazyColdAgainMs === undefined ? '' : `| a second cold walk (new mount, new span cache; memory just freed by the first) | ${s(largeLayer.lazyColdAgainMs)} | ${(largeLayer.ratioColdAgain ?? 0).toFixed(2)} |\n`}

Tar stream sizes: local ${largeLayer.tarBytes}, lazy, second pass: the same; the file listings
(path, type, size, mode, link count of non-directories) of the local tree and the mount are identical.
`);
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) throw new Error('needs dist/ (npm run build)');
  const previousFile = join(ROOT, 'bench', 'results', 'snapshotter.json');
  const previous = CASE !== 'all' && existsSync(previousFile) ? (JSON.parse(readFileSync(previousFile, 'utf8')) as Partial<Result>) : undefined;
  if (CASE !== 'all' && (previous?.python === undefined || previous.largeLayer === undefined)) {
    throw new Error(`--case ${CASE} takes the other part's figures from ${previousFile}: run the whole bench once first`);
  }
  const registry = await startRegistry({ dir: join(work.path, 'registry') });
  const proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy'), extraArgs: ['--cache-dir', join(work.path, 'proxy-cache'), '--min-layer-size', '65536', '--span-size', String(SPAN_SIZE), '--index-mode', 'wait', '--log-level', 'warn', '--no-cache-blobs'], timeoutMs: 60_000 }); // span reads pass through: the registry log counts them
  try {
    const { tgz, dir } = await bigLayer();
    const bigBlob = readFileSync(tgz);
    const files = Number(execFileSync('sh', ['-c', `find ${dir} -type f | wc -l`]).toString().trim());
    let python = previous?.python as PythonFigures;
    if (CASE !== 'big') {
      python = await pythonFigures(registry, proxy, bigBlob);
      console.log('python', python);
    }
    let largeLayer = previous?.largeLayer as LargeLayerFigures;
    if (CASE !== 'python') {
      const defaultProxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy-default'), extraArgs: ['--cache-dir', join(work.path, 'proxy-default-cache'), '--min-layer-size', '65536', '--span-size', String(SPAN_SIZE), '--index-mode', 'wait', '--log-level', 'warn'], timeoutMs: 60_000 });
      try {
        largeLayer = await largeLayerFigures(registry, defaultProxy, bigBlob, dir, files);
      } finally {
        await defaultProxy.stop();
      }
      console.log('large layer', largeLayer);
    }
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'bench'], { cwd: ROOT }).toString().trim() !== '';
    const machine = `${cpus().length}× ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, linux ${release()}`;
    writeReport({
      commit: dirty ? `${commit}+uncommitted` : commit, node: process.version, machine, date: new Date().toISOString(), python, largeLayer,
      ...(CASE === 'all' ? {} : { rerun: CASE }),
    });
  } finally {
    await proxy.stop();
    await registry.stop();
    work.remove();
  }
}

await main();
