/**
 * The containerd remote snapshotter end to end, all on loopback with their own dirs: docker-registry
 * upstream holding the harness python image, the built proxy (`dist/cli.js serve --min-layer-size 65536`)
 * synthesizing its SOCI index, `dist/cli.js snapshotter` as containerd 1.6's proxy plugin `soci`.
 * Lazy path: `ctr-remote image rpull --snapshotter soci` through the proxy mounts every layer over FUSE
 * (mounts appear in /proc/mounts, the registry serves far less than the image after the index was built),
 * `ctr run` prints {"ok": 1}, a second container adds no FUSE mount, a restarted snapshotter remounts on
 * demand and runs a third, and `ctr image rm --sync` (containerd's GC: List, Remove, Cleanup) leaves no
 * mount and no snapshot. Normal path: `ctr image pull --snapshotter soci` straight from the registry (no
 * SOCI) is unpacked by containerd into our overlay snapshots and runs. Needs root, /dev/fuse, containerd,
 * runc, ctr-remote and dist/ (`npm run build`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  pushImage, pythonImage, startContainerd, startDaemon, startProxy, startRegistry, tempDir,
  type BuiltImage, type Containerd, type Daemon, type Proxy, type Registry,
} from './harness/index.js';
import { containerdFuseSkip } from './harness/capabilities.js';

const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist', 'cli.js');
const skip = containerdFuseSkip(ROOT, CLI);

/** FUSE mount points under `dir`. */
function fuseMounts(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '))
    .filter((f) => f[2]?.startsWith('fuse') && f[1] !== undefined && f[1].startsWith(`${dir}/`)).map((f) => f[1]!).sort();
}

describe('containerd remote snapshotter', { skip }, () => {
  const work = tempDir('ctrd-e2e');
  let registry: Registry;
  let proxy: Proxy;
  let ctrd: Containerd;
  let snap: Daemon | undefined;
  let image: BuiltImage;
  const sock = join(work.path, 'snap', 'soci.sock');
  const snapRoot = join(work.path, 'snap', 'root');

  async function startSnapshotter(): Promise<Daemon> {
    writeFileSync(join(work.path, 'snap.json'), JSON.stringify({ registries: { [proxy.host]: { plainHttp: true } }, backgroundFetch: { periodMs: 0, quietMs: 0 }, logLevel: 'info' }));
    return startDaemon({
      name: 'soci-snapshotter',
      cmd: process.execPath,
      args: [CLI, 'snapshotter', '--address', sock, '--root', snapRoot, '--config', join(work.path, 'snap.json')],
      cwd: ROOT,
      logFile: join(work.path, 'snapshotter.log'),
      ready: () => existsSync(sock),
      timeoutMs: 20_000,
    });
  }

  const ctrOk = async (args: string[], timeoutMs = 120_000): Promise<string> => {
    const r = await ctrd.ctr(args, { timeoutMs });
    assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}\n--- snapshotter log:\n${snap?.logs().slice(-3000)}`);
    return r.stdout;
  };

  before(async () => {
    registry = await startRegistry({ dir: join(work.path, 'registry') });
    image = await pythonImage();
    await pushImage(image, { registry: registry.url, repo: 'test/python', tag: 'latest' });
    proxy = await startProxy({
      upstream: registry.url,
      dir: join(work.path, 'proxy'),
      // --no-cache-blobs: layer reads pass through, so the registry's log counts what each pull fetched.
      extraArgs: ['--cache-dir', join(work.path, 'proxy-cache'), '--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--log-level', 'warn', '--no-cache-blobs'],
    });
    snap = await startSnapshotter();
    ctrd = await startContainerd({ dir: join(work.path, 'containerd'), proxyPlugins: { soci: sock } });
  });
  after(async () => {
    await ctrd?.stop();
    await snap?.stop();
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('lazy pull, run, reuse, restart, GC', async () => {
    const ref = `${proxy.host}/test/python:latest`;
    // Have the proxy build the SOCI index first (--index-mode wait), then count what the registry serves.
    const warm = await fetch(`${proxy.url}/v2/test/python/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(warm.status, 200);
    await warm.arrayBuffer();
    await registry.settle();
    const from = registry.requests().length;
    const imageBytes = image.layers.reduce((n, l) => n + l.descriptor.size, 0);

    const t0 = performance.now();
    const pull = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'soci', ref]);
    assert.equal(pull.code, 0, `rpull: ${pull.stderr}\n${snap!.logs().slice(-3000)}`);
    const pullMs = performance.now() - t0;
    await registry.settle();
    const layerBytes = (since: number): number => registry.requests().slice(since)
      .filter((e) => e.method === 'GET' && e.blob !== undefined && image.layers.some((l) => l.descriptor.digest === e.blob))
      .reduce((n, e) => n + e.bytes, 0);
    const pulled = layerBytes(from);
    assert.ok(pulled < imageBytes / 10, `registry served ${pulled} layer bytes of ${imageBytes} for the lazy pull`);
    const mounts1 = fuseMounts(snapRoot);
    assert.equal(mounts1.length, image.layers.length, `one FUSE mount per layer: ${mounts1.join(', ')}\n${snap!.logs().slice(-2000)}`);

    const out1 = await ctrOk(['run', '--rm', '--snapshotter', 'soci', ref, 'c1']);
    assert.equal(out1.trim(), '{"ok": 1}');
    await registry.settle();
    const served = layerBytes(from);
    // python3.11 maps most of its own binary at start, so the first run reads much of layer 1; still not all
    assert.ok(served < imageBytes, `registry served ${served} layer bytes of ${imageBytes} for pull + first run`);
    process.stderr.write(`# lazy pull ${pullMs.toFixed(0)} ms; registry served ${pulled} B for the pull, ${served} of ${imageBytes} layer bytes for pull + first run\n`);

    const out2 = await ctrOk(['run', '--rm', '--snapshotter', 'soci', ref, 'c2']);
    assert.equal(out2.trim(), '{"ok": 1}');
    assert.deepEqual(fuseMounts(snapRoot), mounts1, 'a second container reuses the mounts');

    // restart the snapshotter: it unmounts on SIGTERM and remounts on demand
    const exit = await snap!.stop();
    assert.equal(exit.code, 0, snap!.logs().slice(-2000));
    assert.deepEqual(fuseMounts(snapRoot), [], 'SIGTERM unmounts every layer');
    snap = await startSnapshotter();
    // containerd redials a restarted plugin on its gRPC backoff schedule (about 1 s, growing 1.6x): until
    // then its calls fail fast with "connection error". Retry that one condition for a bounded time.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await ctrd.ctr(['snapshots', '--snapshotter', 'soci', 'usage'], { timeoutMs: 10_000 });
      if (r.code === 0 || !/connection error|Unavailable|unavailable/.test(r.stderr) || Date.now() > deadline) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    const out3 = await ctrOk(['run', '--rm', '--snapshotter', 'soci', ref, 'c3']);
    assert.equal(out3.trim(), '{"ok": 1}');
    assert.deepEqual(fuseMounts(snapRoot), mounts1, 'the same layers are mounted again at the same places');

    // GC: the image goes, containerd removes every backend snapshot, and the mounts go with them
    await ctrOk(['image', 'rm', '--sync', ref]);
    assert.deepEqual(fuseMounts(snapRoot), [], `GC leaves no FUSE mount\n${snap!.logs().slice(-2000)}`);
    assert.equal((await ctrOk(['snapshots', '--snapshotter', 'soci', 'ls'])).trim().split('\n').length, 1, 'only the header line');
    const left = spawnSync('ls', [join(snapRoot, 'snapshots')], { encoding: 'utf8' }).stdout.trim();
    assert.equal(left, '', 'no snapshot dir left');
  });

  test('normal path: an image without SOCI is unpacked by containerd into soci snapshots', async () => {
    const ref = `${registry.host}/test/python:latest`;
    await ctrOk(['image', 'pull', '--plain-http', '--snapshotter', 'soci', ref]);
    assert.deepEqual(fuseMounts(snapRoot), []);
    const out = await ctrOk(['run', '--rm', '--snapshotter', 'soci', ref, 'n1']);
    assert.equal(out.trim(), '{"ok": 1}');
    const ls = (await ctrOk(['snapshots', '--snapshotter', 'soci', 'ls'])).trim().split('\n');
    assert.equal(ls.length, 1 + image.layers.length, ls.join('\n'));
    await ctrOk(['image', 'rm', '--sync', ref]);
    assert.equal((await ctrOk(['snapshots', '--snapshotter', 'soci', 'ls'])).trim().split('\n').length, 1);
  });
});
