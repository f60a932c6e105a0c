/**
 * `soci-proxy mount` end to end: docker-registry upstream, the built proxy (`dist/cli.js serve`) synthesizing
 * SOCI indexes, and `src/cli.ts mount --detach` assembling overlay rootfses from lazy FUSE layers and
 * unpacked ones. Checks every entry of the merged view against the layer tars with whiteouts applied
 * (content sha256, type, mode, owner, mtime, symlink targets, hard links sharing an inode, nothing extra),
 * runs python3.11 from the lazy rootfs with chroot while counting what the registry served, and checks
 * that unmount leaves no mounts. Fault: the proxy stopped under a mount gives EIO within the read deadline,
 * and reads work again once it is back on the same port. Needs root, /dev/fuse, python3 and dist/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeFuseAvailable } from '../src/snapshotter/fs/index.js';
import {
  buildImage, freePort, mixedImage, pushImage, pythonImage, randomBytes, runCommand, startDaemon, startRegistry, tempDir, textBytes,
  type BuiltImage, type Daemon, type Registry,
} from './harness/index.js';

const ROOT = new URL('..', import.meta.url).pathname;
const HAVE_DIST = existsSync(join(ROOT, 'dist', 'cli.js'));
const canRun = process.getuid?.() === 0 && existsSync('/dev/fuse') && spawnSync('python3', ['-c', '1']).status === 0;
const probe = canRun ? spawnSync(process.execPath, ['-e', "require('fuse-native')"], { cwd: ROOT, encoding: 'utf8' }) : undefined;
const skip = !canRun ? 'needs root, /dev/fuse and python3 (skipped)'
  : probe?.status !== 0 ? `fuse-native does not load: ${probe?.stderr.slice(0, 200)} (skipped)`
  : !HAVE_DIST ? 'run `npm run build` first (dist/cli.js missing)' : false;

// Expected merged view from the layer tars (bottom first), compared with lstat/read through the mount.
const COMPARE_PY = String.raw`
import tarfile, sys, os, stat, hashlib, json
root, tars = sys.argv[1], sys.argv[2:]
view = {}
def drop(p):
    for k in [k for k in view if k == p or k.startswith(p + '/')]: del view[k]
for li, t in enumerate(tars):
    with tarfile.open(t) as tf:
        data = {}
        entries, opq, wh = [], [], []
        for m in tf.getmembers():
            name = os.path.normpath(m.name.lstrip('/'))
            if name == '.': continue
            base, d = os.path.basename(name), os.path.dirname(name)
            if base == '.wh..wh..opq': opq.append(d); continue
            if base.startswith('.wh.'): wh.append(os.path.join(d, base[4:])); continue
            entries.append((name, m))
        for d in opq:
            for k in [k for k in view if k.startswith(d + '/')]: del view[k]
        for p in wh: drop(p)
        for name, m in entries:
            prev = view.get(name)
            if not (m.isdir() and prev and prev['type'] == 'dir'): drop(name)
            e = dict(mode=stat.S_IMODE(m.mode), uid=m.uid, gid=m.gid, mtime=int(m.mtime))
            if m.isdir(): e['type'] = 'dir'
            elif m.issym(): e.update(type='symlink', link=m.linkname)
            elif m.islnk():
                tgt = os.path.normpath(m.linkname.lstrip('/'))
                src = data[tgt]; e.update(type='reg', sha=src['sha'], size=src['size'], group=(li, tgt), mode=src['mode'], uid=src['uid'], gid=src['gid'], mtime=src['mtime'])
                view[tgt]['group'] = (li, tgt)
            elif m.isreg():
                b = tf.extractfile(m).read()
                e.update(type='reg', sha=hashlib.sha256(b).hexdigest(), size=len(b))
                data[name] = e
            elif m.ischr() or m.isblk(): e.update(type='dev', rdev=os.makedev(m.devmajor, m.devminor))
            elif m.isfifo(): e['type'] = 'fifo'
            else: continue
            view[name] = e
bad, groups, seen = [], {}, set()
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.relpath(os.path.join(d, n), root); seen.add(p)
        if p not in view: bad.append(['extra', p])
for p, e in sorted(view.items()):
    full = os.path.join(root, p)
    try: st = os.lstat(full)
    except OSError as ex: bad.append(['missing', p, str(ex)]); continue
    kind = 'dir' if stat.S_ISDIR(st.st_mode) else 'symlink' if stat.S_ISLNK(st.st_mode) else 'reg' if stat.S_ISREG(st.st_mode) else 'dev' if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 'fifo'
    got = dict(type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime))
    if kind == 'symlink': got['link'] = os.readlink(full); got['mode'] = e['mode'] = 0
    if kind == 'reg':
        with open(full, 'rb') as f: b = f.read()
        got.update(sha=hashlib.sha256(b).hexdigest(), size=len(b))
    if kind == 'dev': got['rdev'] = st.st_rdev
    want = {k: v for k, v in e.items() if k != 'group'}
    if got != want: bad.append(['differs', p, want, got])
    if 'group' in e: groups.setdefault(repr(e['group']), set()).add((st.st_dev, st.st_ino))
for g, inos in groups.items():
    if len(inos) != 1: bad.append(['hardlink-inodes', g, sorted(inos)])
print(json.dumps(dict(checked=len(view), links=len(groups), bad=bad[:20], nbad=len(bad))))
`;

const cli = (args: string[], timeoutMs = 60_000) => runCommand(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args], { cwd: ROOT, timeoutMs, check: false });
const fuseMounts = (): string[] => readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => / fuse[. ]/.test(l) || / overlay /.test(l));

describe('soci-proxy mount', { skip }, () => {
  const work = tempDir('snap-mount');
  let registry: Registry;
  let proxy: Daemon;
  let proxyPort: number;
  let python: BuiltImage;
  let mixed: BuiltImage;
  let whiteouts: BuiltImage;

  const startTheProxy = async (): Promise<Daemon> => startDaemon({
    name: 'soci-proxy', cmd: process.execPath, cwd: ROOT, logFile: join(work.path, 'proxy.log'),
    args: [join(ROOT, 'dist', 'cli.js'), 'serve', '--listen', `127.0.0.1:${proxyPort}`, '--upstream', registry.url, '--cache-dir', join(work.path, 'proxy-cache'),
      // --no-cache-blobs: the proxy passes every span read through, so the registry's log counts what the mount fetched.
      '--min-layer-size', '65536', '--span-size', '262144', '--index-mode', 'wait', '--log-level', 'warn', '--no-cache-blobs'],
    ready: async () => (await fetch(`http://127.0.0.1:${proxyPort}/healthz`).then((r) => r.status, () => 0)) === 200,
    timeoutMs: 20_000,
  });
  const mount = async (repo: string, mp: string, cacheDir: string, extra: string[] = []): Promise<void> => {
    const r = await cli(['mount', `${repo}:latest`, mp, '--registry', `http://127.0.0.1:${proxyPort}`, '--cache-dir', cacheDir, '--detach', '--bg-fetch-period-ms', '0', ...extra]);
    assert.equal(r.code, 0, `mount failed: ${r.stdout}${r.stderr}`);
  };
  const unmount = async (mp: string): Promise<void> => {
    const r = await cli(['unmount', mp]);
    assert.equal(r.code, 0, `unmount failed: ${r.stdout}${r.stderr}`);
  };
  const compare = async (img: BuiltImage, mp: string): Promise<{ checked: number; links: number; bad: unknown[]; nbad: number }> => {
    const tars = img.layers.map((l, i) => {
      const f = join(work.path, `${img.descriptor.digest.slice(7, 19)}-${i}.tar`);
      writeFileSync(f, l.tar);
      return f;
    });
    const r = await runCommand('python3', ['-c', COMPARE_PY, mp, ...tars], { timeoutMs: 60_000 });
    return JSON.parse(r.stdout) as { checked: number; links: number; bad: unknown[]; nbad: number };
  };

  before(async () => {
    registry = await startRegistry({ dir: join(work.path, 'registry') });
    // The harness python image is little more than what python3.11 needs to start; real images carry
    // much more (docs, other tools). A third layer of unused files stands in for that.
    const py = await pythonImage();
    const unused: Record<string, Uint8Array> = {};
    for (let i = 0; i < 24; i++) unused[`usr/share/unused/blob-${i}.bin`] = randomBytes(256 * 1024, 300 + i);
    python = await buildImage({
      tag: 'pyplus',
      layers: [...py.layers.map((l) => ({ tarGz: l.blob })), { files: unused }],
      config: { cmd: ['/usr/bin/python3.11', '-c', 'import json; print(json.dumps({"ok": 1}))'] },
    });
    mixed = await mixedImage();
    const lower: Record<string, Uint8Array | string> = { 'big/random.bin': randomBytes(200 * 1024, 41) };
    for (const n of ['gone.txt', 'keep.txt']) lower[`w/${n}`] = textBytes(3000, n.length);
    for (const n of ['old1', 'old2']) lower[`o/${n}`] = textBytes(2000, n.length + 7);
    lower['u/x'] = 'hidden by an unpacked layer\n';
    lower['u/y'] = 'stays\n';
    whiteouts = await buildImage({
      tag: 'wh',
      layers: [
        { files: lower },
        { files: { 'big/more.bin': randomBytes(150 * 1024, 42), 'w/.wh.gone.txt': '', 'o/.wh..wh..opq': '', 'o/new': 'new in opaque dir\n' } },
        { files: { 'u/.wh.x': '', 'u/z': { content: 'small layer\n', mode: 0o600, uid: 7, gid: 8, mtime: 1600000000 } } },
      ],
    });
    await pushImage(python, { registry: registry.url, repo: 'test/python', tag: 'latest' });
    await pushImage(mixed, { registry: registry.url, repo: 'test/mixed', tag: 'latest' });
    await pushImage(whiteouts, { registry: registry.url, repo: 'test/wh', tag: 'latest' });
    proxyPort = await freePort();
    proxy = await startTheProxy();
    // A first GET through the proxy builds the SOCI index (index-mode wait): registry reads after this are the mount's.
    for (const repo of ['test/python', 'test/mixed', 'test/wh']) {
      const r = await fetch(`http://127.0.0.1:${proxyPort}/v2/${repo}/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' } });
      await r.arrayBuffer();
      assert.equal(r.status, 200);
    }
    await registry.settle();
  });
  after(async () => {
    for (const mp of ['py', 'mixed', 'wh', 'fault']) await cli(['unmount', join(work.path, mp)]).catch(() => undefined);
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('python image: lazy rootfs equals the layers, chroot runs python3.11, registry serves far less than the image', async (t) => {
    const mp = join(work.path, 'py');
    const mark = registry.requests().length;
    // Every zTOC of this image through the table worker (fetch, verify, check, table); the other images take
    // the main-thread path (their zTOCs are below the default 4 MiB).
    await mount('test/python', mp, join(work.path, 'cache-py'), ['--ztoc-worker-bytes', '0']);
    t.after(() => cli(['unmount', mp]));
    const state = JSON.parse(readFileSync(join(work.path, '.py.soci-mount.json'), 'utf8')) as { pid: number; layers: Array<{ lazy: boolean }> };
    assert.deepEqual(state.layers.map((l) => l.lazy), python.layers.map(() => true), 'every python layer has a zTOC and is lazy');
    const r = await runCommand('chroot', [mp, '/usr/bin/python3.11', '-c', 'import json; print(json.dumps({"ok": 1}))'], { timeoutMs: 30_000 });
    assert.equal(r.stdout.trim(), '{"ok": 1}');
    await registry.settle();
    const served = python.layers.reduce((n, l) => n + registry.blobBytes(l.descriptor.digest, mark), 0);
    const total = python.layers.reduce((n, l) => n + l.blob.length, 0);
    const perLayer = python.layers.map((l) => `${registry.blobBytes(l.descriptor.digest, mark)}/${l.blob.length}`).join(', ');
    t.diagnostic(`python3.11 start: registry served ${served} of ${total} layer bytes (${(100 * served / total).toFixed(1)}%; per layer ${perLayer})`);
    assert.ok(served > 0, 'python ran from lazily fetched spans');
    assert.ok(served < 0.5 * total, `served ${served} of ${total} bytes`);
    assert.equal(registry.blobBytes(python.layers[2]?.descriptor.digest ?? '', mark), 0, 'the unused layer was not read');
    const c = await compare(python, mp);
    assert.equal(c.nbad, 0, JSON.stringify(c.bad, null, 1));
    assert.ok(c.checked > 300, `checked ${c.checked} entries`);
    await unmount(mp);
    assert.deepEqual(fuseMounts().filter((l) => l.includes(work.path)), []);
    // The mount's summary (its log, info level) counts what the kernel asked the native FUSE servers.
    const logs = readdirSync(join(work.path, 'cache-py', 'mounts')).filter((f) => f.endsWith('.log'));
    const summary = logs.flatMap((f) => readFileSync(join(work.path, 'cache-py', 'mounts', f), 'utf8').split('\n'))
      .filter((l) => l.includes('unmounted; summary')).map((l) => JSON.parse(l) as { stats: { fuse: { reads: number; kernel: { ops: Record<string, number>; fastReads: number; slowReads: number } } } })[0];
    assert.ok(summary, 'the mount logged its summary');
    const k = summary.stats.fuse.kernel;
    if (nativeFuseAvailable()) {
      assert.ok((k.ops.lookup ?? 0) + (k.ops.readdirplus ?? 0) > 0, JSON.stringify(k));
      assert.ok(k.fastReads + k.slowReads > 0 && (k.ops.read ?? 0) >= k.fastReads + k.slowReads, JSON.stringify(k));
    } else {
      assert.ok(summary.stats.fuse.reads > 0);
    }
    assert.equal(existsSync(join(work.path, '.py.soci-mount.json')), false);
    assert.throws(() => process.kill(state.pid, 0), 'the mount process has exited');
  });

  test('mixed image: lazy (gzip, tar) and unpacked (pax global, multi-member, small) layers, hard links and symlinks', async (t) => {
    const mp = join(work.path, 'mixed');
    t.after(() => cli(['unmount', mp]));
    await mount('test/mixed', mp, join(work.path, 'cache-mixed'));
    const state = JSON.parse(readFileSync(join(work.path, '.mixed.soci-mount.json'), 'utf8')) as { layers: Array<{ lazy: boolean }> };
    assert.deepEqual(state.layers.map((l) => l.lazy), [true, true, false, false, false]);
    const c = await compare(mixed, mp);
    assert.equal(c.nbad, 0, JSON.stringify(c.bad, null, 1));
    assert.ok(c.links >= 1, 'a hard link was checked');
    writeFileSync(join(mp, 'written.txt'), 'upper\n');
    assert.equal(readFileSync(join(mp, 'written.txt'), 'utf8'), 'upper\n');
    await unmount(mp);
    assert.deepEqual(fuseMounts().filter((l) => l.includes(work.path)), []);
  });

  test('whiteouts and opaque dirs from lazy and unpacked layers hide lower files', async (t) => {
    const mp = join(work.path, 'wh');
    t.after(() => cli(['unmount', mp]));
    await mount('test/wh', mp, join(work.path, 'cache-wh'));
    const state = JSON.parse(readFileSync(join(work.path, '.wh.soci-mount.json'), 'utf8')) as { layers: Array<{ lazy: boolean }> };
    assert.deepEqual(state.layers.map((l) => l.lazy), [true, true, false]);
    assert.equal(existsSync(join(mp, 'w', 'gone.txt')), false);
    assert.equal(existsSync(join(mp, 'w', 'keep.txt')), true);
    assert.deepEqual((await runCommand('ls', ['-A', join(mp, 'o')])).stdout.split('\n').filter(Boolean), ['new']);
    assert.deepEqual((await runCommand('ls', ['-A', join(mp, 'u')])).stdout.split('\n').filter(Boolean), ['y', 'z']);
    const c = await compare(whiteouts, mp);
    assert.equal(c.nbad, 0, JSON.stringify(c.bad, null, 1));
    await unmount(mp);
    assert.deepEqual(fuseMounts().filter((l) => l.includes(work.path)), []);
  });

  test('fault: proxy gone → EIO within the deadline; back on the same port → reads work', async (t) => {
    const mp = join(work.path, 'fault');
    mkdirSync(mp, { recursive: true });
    t.after(() => cli(['unmount', mp]));
    // --fill-layer-bytes 0: the small layers must not be fetched whole at mount, before the proxy stops.
    await mount('test/mixed', mp, join(work.path, 'cache-fault'), ['--read-timeout-ms', '4000', '--fetch-timeout-ms', '1000', '--retries', '1', '--fill-layer-bytes', '0']);
    await proxy.stop();
    const t0 = Date.now();
    const r = await runCommand('cat', [join(mp, 'data', 'random-5.bin')], { check: false, timeoutMs: 20_000 });
    const ms = Date.now() - t0;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Input\/output error/);
    assert.ok(ms < 6000, `EIO after ${ms} ms`);
    proxy = await startTheProxy();
    const again = await runCommand('sha256sum', [join(mp, 'data', 'random-5.bin')], { timeoutMs: 20_000 });
    const { createHash } = await import('node:crypto');
    const layer0 = mixed.layers[0] as { tar: Buffer };
    assert.ok(layer0.tar.includes(randomBytes(48 * 1024 + 5000, 105)), 'fixture sanity');
    assert.equal(again.stdout.split(' ')[0], createHash('sha256').update(randomBytes(48 * 1024 + 5000, 105)).digest('hex'));
    await unmount(mp);
    assert.deepEqual(fuseMounts().filter((l) => l.includes(work.path)), []);
  });
});
