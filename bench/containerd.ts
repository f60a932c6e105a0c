/**
 * containerd benchmark: time to first output of a container, full pull vs lazy, in one run on the same
 * image and the same registry.
 *   npm run build && node --import tsx bench/containerd.ts      (needs root, /dev/fuse; the snapshotter runs from dist/cli.js)
 * Image `test/app`: the harness python image's two layers (python3.11 + stdlib slice) plus a third, large
 * layer the command never reads, as a real python image carries: a copy of the host's /usr/share (~790 MB
 * of tar, ~58k files, ~277 MB gzip; built once with pigz and cached under .cache/bench, shared with
 * bench/snapshotter.ts); cmd prints {"ok": 1}. Pushed to a loopback docker-registry. Cases, each against a fresh
 * containerd 1.6 and a fresh snapshotter root:
 *   overlayfs  `ctr image pull --plain-http REG/test/app` + `ctr run --rm` (containerd downloads and unpacks all)
 *   soci-proxy `ctr-remote image rpull --plain-http --snapshotter soci PROXY/test/app` + `ctr run --rm
 *              --snapshotter soci`, cold span cache, SOCI index already built by the proxy (its build is
 *              timed and its registry bytes counted separately, as it happens once per image for a fleet);
 *              proxy `--min-layer-size 65536` (every layer gets a zTOC: one layer on the normal path makes
 *              containerd download it and all later ones), background fetch off so bytes are on-demand only.
 * Bytes = layer-blob body bytes in the registry's access log during the case. Writes
 * bench/results/containerd.json, containerd.md and containerd.svg (bars per case).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  buildImage, hostBinariesRootfs, pushImage, runCommand, startContainerd, startDaemon, startProxy, startRegistry, tempDir,
  type BuiltImage, type Registry,
} from '../test/harness/index.js';

const ROOT = new URL('..', import.meta.url).pathname;
const RESULTS = join(ROOT, 'bench', 'results');
const CACHE = join(ROOT, '.cache', 'bench');

/** The large unread layer: /usr/share tarred and gzipped once, cached (same file as bench/snapshotter.ts). */
async function bigLayer(): Promise<string> {
  const tgz = join(CACHE, 'usr-share.tar.gz');
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(tgz)) {
    await runCommand('sh', ['-c', `tar -C / --numeric-owner --format=pax -cf - usr/share | pigz -p 2 > ${tgz}.tmp && mv ${tgz}.tmp ${tgz}`], { timeoutMs: 900_000 });
  }
  return tgz;
}

async function buildAppImage(dir: string): Promise<BuiltImage> {
  const base = await hostBinariesRootfs(['/bin/sh', '/usr/bin/python3.11'], join(dir, 'base'));
  const stdlib = join(dir, 'stdlib', 'usr', 'lib', 'python3.11');
  mkdirSync(stdlib, { recursive: true });
  const src = '/usr/lib/python3.11';
  const top = (await runCommand('ls', [src])).stdout.split('\n').filter((n) => n.endsWith('.py'));
  await runCommand('cp', ['-a', '--no-preserve=ownership', ...[...top, 'encodings', 'json', 're', 'collections', 'importlib'].map((n) => join(src, n)), stdlib + '/']);
  await runCommand('find', [stdlib, '-name', '__pycache__', '-prune', '-exec', 'rm', '-rf', '{}', ';']);
  return buildImage({
    tag: 'app',
    layers: [{ dir: base }, { dir: join(dir, 'stdlib') }, { tarGz: readFileSync(await bigLayer()) }],
    config: { cmd: ['/usr/bin/python3.11', '-c', 'import json; print(json.dumps({"ok": 1}))'] },
  });
}

interface CaseResult {
  name: string;
  pullMs: number;
  runMs: number;
  totalMs: number;
  registryLayerBytes: number;
  output: string;
}

function layerBytes(registry: Registry, image: BuiltImage, from: number): number {
  const digests = new Set(image.layers.map((l) => l.descriptor.digest));
  return registry.requests().slice(from).filter((e) => e.method === 'GET' && e.blob !== undefined && digests.has(e.blob)).reduce((n, e) => n + e.bytes, 0);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

function svg(cases: CaseResult[], imageBytes: number): string {
  const W = 640, barH = 28, gap = 18, left = 150, maxMs = Math.max(...cases.map((c) => c.totalMs));
  const scale = (W - left - 140) / maxMs;
  const rows = cases.map((c, i) => {
    const y = 40 + i * (barH * 2 + gap);
    const pw = c.pullMs * scale, rw = c.runMs * scale;
    const bw = (c.registryLayerBytes / imageBytes) * (W - left - 140);
    return [
      `<text x="10" y="${y + 18}" font-size="13">${c.name}</text>`,
      `<rect x="${left}" y="${y}" width="${pw.toFixed(1)}" height="${barH}" fill="#4a78c2"/>`,
      `<rect x="${(left + pw).toFixed(1)}" y="${y}" width="${rw.toFixed(1)}" height="${barH}" fill="#9bb8e8"/>`,
      `<text x="${(left + pw + rw + 6).toFixed(1)}" y="${y + 18}" font-size="12">${(c.totalMs / 1000).toFixed(2)} s to first output</text>`,
      `<rect x="${left}" y="${y + barH + 2}" width="${Math.max(bw, 1).toFixed(1)}" height="${barH / 2}" fill="#e0884a"/>`,
      `<text x="${(left + Math.max(bw, 1) + 6).toFixed(1)}" y="${y + barH + 13}" font-size="11">${(c.registryLayerBytes / 1e6).toFixed(1)} MB from registry</text>`,
    ].join('\n  ');
  });
  const H = 60 + cases.length * (barH * 2 + gap);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
  <text x="10" y="20" font-size="14" font-weight="bold">containerd: pull + first output (dark: pull, light: run; orange: layer bytes of ${(imageBytes / 1e6).toFixed(0)} MB)</text>
  ${rows.join('\n  ')}
</svg>
`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0 || !existsSync('/dev/fuse') || !existsSync(join(ROOT, 'dist', 'cli.js'))) throw new Error('needs root, /dev/fuse and dist/ (npm run build)');
  const work = tempDir('bench-ctrd');
  const registry = await startRegistry({ dir: join(work.path, 'registry') });
  const image = await buildAppImage(join(work.path, 'img'));
  await pushImage(image, { registry: registry.url, repo: 'test/app', tag: 'latest' });
  const imageBytes = image.layers.reduce((n, l) => n + l.descriptor.size, 0);
  const cases: CaseResult[] = [];
  try {
    // 1. overlayfs, full pull
    {
      const ctrd = await startContainerd({ dir: join(work.path, 'ctrd-full') });
      await registry.settle();
      const from = registry.requests().length;
      const ref = `${registry.host}/test/app:latest`;
      const [, pullMs] = await timed(() => ctrd.ctr(['image', 'pull', '--plain-http', ref], { timeoutMs: 600_000 }).then((r) => { if (r.code) throw new Error(r.stderr); }));
      const [out, runMs] = await timed(() => ctrd.ctr(['run', '--rm', ref, 'b1']));
      await registry.settle();
      cases.push({ name: 'overlayfs (full pull)', pullMs, runMs, totalMs: pullMs + runMs, registryLayerBytes: layerBytes(registry, image, from), output: out.stdout.trim() });
      await ctrd.ctr(['image', 'rm', '--sync', ref]);
      await ctrd.stop();
    }
    // 2. soci-proxy, lazy, cold span cache
    let indexMs = 0;
    let indexBytes = 0;
    {
      const proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy'), extraArgs: ['--cache-dir', join(work.path, 'proxy-cache'), '--min-layer-size', '65536', '--index-mode', 'wait', '--log-level', 'warn', '--no-cache-blobs'] }); // layer reads pass through: the registry log counts the lazy pull's bytes
      const sock = join(work.path, 'snap', 'soci.sock');
      const cfg = join(work.path, 'snap.json');
      writeFileSync(cfg, JSON.stringify({ registries: { [proxy.host]: { plainHttp: true } }, backgroundFetch: { periodMs: 0, quietMs: 0 }, logLevel: 'warn' }));
      const snap = await startDaemon({
        name: 'snapshotter', cmd: process.execPath, cwd: ROOT, logFile: join(work.path, 'snap.log'), ready: () => existsSync(sock),
        args: [join(ROOT, 'dist', 'cli.js'), 'snapshotter', '--address', sock, '--root', join(work.path, 'snap', 'root'), '--config', cfg],
      });
      const ctrd = await startContainerd({ dir: join(work.path, 'ctrd-lazy'), proxyPlugins: { soci: sock } });
      try {
        await registry.settle();
        let from = registry.requests().length;
        [, indexMs] = await timed(async () => {
          const r = await fetch(`${proxy.url}/v2/test/app/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
          await r.arrayBuffer();
        });
        await registry.settle();
        indexBytes = layerBytes(registry, image, from);
        from = registry.requests().length;
        const ref = `${proxy.host}/test/app:latest`;
        const [, pullMs] = await timed(() => ctrd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'soci', ref]).then((r) => { if (r.code) throw new Error(r.stderr); }));
        const [out, runMs] = await timed(() => ctrd.ctr(['run', '--rm', '--snapshotter', 'soci', ref, 'l1']));
        await registry.settle();
        cases.push({ name: 'soci-proxy (lazy)', pullMs, runMs, totalMs: pullMs + runMs, registryLayerBytes: layerBytes(registry, image, from), output: out.stdout.trim() });
        await ctrd.ctr(['image', 'rm', '--sync', ref]);
      } finally {
        await ctrd.stop();
        await snap.stop();
        await proxy.stop();
      }
    }
    const [full, lazy] = cases as [CaseResult, CaseResult];
    const ratio = lazy.totalMs / full.totalMs;
    let commit = 'unknown';
    try {
      commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
      if (execFileSync('git', ['status', '--porcelain', '--', 'src', 'bench'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '') commit += '+uncommitted';
    } catch { /* not a checkout */ }
    const machine = `${cpus().length}× ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${process.platform} ${process.version}`;
    const result = { commit, node: process.version, date: new Date().toISOString(), machine, containerd: 'containerd 1.6 (Debian), ctr-remote 0.12', image: { layers: image.layers.map((l) => l.descriptor.size), bytes: imageBytes, bigLayer: 'copy of /usr/share' }, index: { ms: Math.round(indexMs), registryLayerBytes: indexBytes }, cases: cases.map((c) => ({ ...c, pullMs: Math.round(c.pullMs), runMs: Math.round(c.runMs), totalMs: Math.round(c.totalMs) })), ratio: Number(ratio.toFixed(3)), target: 0.1 };
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, 'containerd.json'), JSON.stringify(result, null, 2) + '\n');
    const md = [
      '# containerd: pull + first output',
      '',
      `Command: \`npm run build && node --import tsx bench/containerd.ts\` — commit ${commit}, ${result.date}, ${machine}, loopback docker-registry, ${result.containerd}.`,
      `Image: 3 layers (python3.11 + libs, stdlib slice, a copy of /usr/share that start-up never reads), ${(imageBytes / 1e6).toFixed(1)} MB gzip: ${image.layers.map((l) => `${(l.descriptor.size / 1e6).toFixed(1)}`).join(' + ')} MB.`,
      'Both cases: fresh containerd and snapshotter root, same image, same loopback registry. Time = `ctr image pull` / `ctr-remote image rpull` + `ctr run --rm` until the container exits after printing. Bytes = layer-blob body bytes the registry served during the case.',
      '',
      '| case | pull | run (first output) | pull + first output | layer bytes from registry | output |',
      '|---|---|---|---|---|---|',
      ...cases.map((c) => `| ${c.name} | ${(c.pullMs / 1000).toFixed(2)} s | ${(c.runMs / 1000).toFixed(2)} s | **${(c.totalMs / 1000).toFixed(2)} s** | ${(c.registryLayerBytes / 1e6).toFixed(2)} MB | \`${c.output}\` |`),
      '',
      `Lazy / full time to first output: **${ratio.toFixed(3)}×** (target ≤ 0.1×: ${ratio <= 0.1 ? 'met' : 'not met'}).`,
      `SOCI index build by the proxy before the lazy case (once per image): ${(indexMs / 1000).toFixed(2)} s, ${(indexBytes / 1e6).toFixed(1)} MB read from the registry.`,
      '',
      '![chart](containerd.svg)',
      '',
    ].join('\n');
    writeFileSync(join(RESULTS, 'containerd.md'), md);
    writeFileSync(join(RESULTS, 'containerd.svg'), svg(cases, imageBytes));
    process.stdout.write(md);
  } finally {
    await registry.stop();
    work.remove();
  }
}

await main();
