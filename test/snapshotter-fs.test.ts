/**
 * The snapshotter's first piece end to end: a gzip tar layer built at test time (python tarfile) is indexed
 * by the real indexer, served by a local HTTP server that honours Range with 206, and mounted through FUSE
 * (`mountLayer` over a `SpanFetcher` over an `HttpRangeSource`). Every entry is then checked through the
 * mount against what the fixture script wrote: content sha256, type, mode, uid/gid, mtime, symlink targets,
 * hard-link inode and nlink, devices, whiteouts, opaque and user xattrs; a small read must fetch exactly the
 * spans it covers; an overlay with the mount as lowerdir must hide whited-out names and write to its upper
 * dir; a read with the server gone must be EIO within the deadline. Needs root and /dev/fuse. Every check
 * runs on both FUSE servers: the native libfuse3 one (build/Release/soci_fuse.node) and fuse-native.
 * Inspection runs in child processes (python3), never in this process's thread pool, which must stay
 * free to serve the FUSE requests those reads cause.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { indexLayer, ZtocReader, type IndexedLayer } from '../src/indexer/index.js';
import { HttpRangeSource, SpanFetcher } from '../src/snapshotter/remote/index.js';
import type { MountedLayer } from '../src/snapshotter/fs/index.js';

const SPAN = 64 * 1024;
const canRun = process.getuid?.() === 0 && existsSync('/dev/fuse') && spawnSync('python3', ['-c', '1']).status === 0;
// fuse-native's addon needs libfuse.so.2 on the loader path (its bundled copy is named libfuse.so).
// Probed in a child first: a failed dlopen inside this process leaves an unhandled rejection behind.
const probe = canRun ? spawnSync(process.execPath, ['-e', "require('fuse-native')"], { encoding: 'utf8' }) : undefined;
const fuseNativeError = probe === undefined || probe.status === 0 ? undefined : /libfuse[^\n]*/.exec(probe.stderr)?.[0] ?? probe.stderr.slice(0, 200);
const fsMod = canRun ? await import('../src/snapshotter/fs/index.js').catch((e: Error) => e) : undefined;
const { buildLayerTree, mountLayer, nativeFuseAvailable } = (fsMod && !(fsMod instanceof Error) ? fsMod : {}) as typeof import('../src/snapshotter/fs/index.js');
// Every check runs once per FUSE server: the native libfuse3 one (build/Release/soci_fuse.node) and fuse-native.
const BACKENDS: Array<{ backend: 'native' | 'fuse-native'; skip: string | false }> = [
  {
    backend: 'native',
    skip: !canRun ? 'needs root, /dev/fuse and python3 (skipped)'
      : fsMod instanceof Error ? `fs module does not load: ${fsMod.message}`
      : !nativeFuseAvailable() ? 'build/Release/soci_fuse.node missing: run npm run build:native (skipped)' : false,
  },
  {
    backend: 'fuse-native',
    skip: !canRun ? 'needs root, /dev/fuse and python3 (skipped)'
      : fuseNativeError !== undefined ? `fuse-native does not load: ${fuseNativeError} (skipped)`
      : fsMod instanceof Error ? `fs module does not load: ${fsMod.message}` : false,
  },
];

// Writes layer.tar and manifest.json (what every entry must look like through the mount).
const FIXTURE_PY = String.raw`
import tarfile, os, io, json, hashlib, sys
out = sys.argv[1]
rnd = lambda n, seed: (hashlib.sha256(seed.encode()).digest() * (n // 32 + 1))[:n] if n < 64 else os.urandom(n)
entries, manifest = [], []
def add(name, typ=tarfile.REGTYPE, data=b'', mode=0o644, uid=0, gid=0, mtime=1700000000, linkname='', dev=(0, 0), pax=None, expect=True):
    ti = tarfile.TarInfo(name); ti.type = typ; ti.mode = mode; ti.uid = uid; ti.gid = gid; ti.mtime = mtime
    ti.linkname = linkname; ti.devmajor, ti.devminor = dev; ti.size = len(data) if typ == tarfile.REGTYPE else 0
    if pax: ti.pax_headers = pax
    entries.append((ti, data))
    if expect:
        manifest.append(dict(name=name.strip('/').removeprefix('./'), type={tarfile.REGTYPE: 'reg', tarfile.DIRTYPE: 'dir', tarfile.SYMTYPE: 'symlink', tarfile.LNKTYPE: 'hardlink', tarfile.FIFOTYPE: 'fifo', tarfile.CHRTYPE: 'char'}[typ],
            mode=mode, uid=uid, gid=gid, mtime=mtime, linkname=linkname, dev=list(dev), sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
add('./data/sub/deep/', tarfile.DIRTYPE, mode=0o700, uid=5, gid=6, mtime=1600000000)
add('./data/sub/deep/file1', data=os.urandom(100000), uid=1000, gid=1000, mtime=1600000001)
add('./data/small.txt', data=b'hello soci\n', mtime=1650000000)
add('./data/empty', data=b'')
add('./data/r300k', data=os.urandom(300 * 1024), mode=0o755, mtime=1500000000)
add('./data/text', data=(b'The quick brown fox jumps over the lazy dog.\n' * 4000))
add('./data/setuid', data=b'#!/bin/sh\n', mode=0o4755, uid=0, gid=50)
add('./data/sticky/', tarfile.DIRTYPE, mode=0o1777)
add('./data/', tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1001, mtime=1400000000)  # after its children
add('./data/link-small', tarfile.SYMTYPE, linkname='small.txt', mode=0o777)
add('./abs-link', tarfile.SYMTYPE, linkname='/etc/does-not-exist', mode=0o777)
add('./data/hard', tarfile.LNKTYPE, linkname='./data/r300k', mode=0o755, mtime=1500000000)
add('./dev/fifo', tarfile.FIFOTYPE, mode=0o600)
add('./dev/null1', tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
add('./xattr-file', data=b'x' * 5000, pax={'SCHILY.xattr.user.test': 'hello-xattr'})
add('./wh/kept', data=b'kept')
add('./wh/.wh.gone', expect=False)
add('./opq/.wh..wh..opq', expect=False)
add('./opq/new', data=b'new in opaque dir')
add('./tail/big', data=os.urandom(200 * 1024), uid=3, gid=4)
with tarfile.open(os.path.join(out, 'layer.tar'), 'w', format=tarfile.PAX_FORMAT) as tf:
    for ti, data in entries:
        tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
json.dump(manifest, open(os.path.join(out, 'manifest.json'), 'w'))
`;

// Prints, for every path given, what lstat/readlink/sha256/xattrs say (errors as errno names).
const INSPECT_PY = String.raw`
import os, sys, json, hashlib, stat, errno
root = sys.argv[1]; res = {}
for name in sys.argv[2:]:
    p = os.path.join(root, name); r = {}
    try:
        st = os.lstat(p)
        r.update(mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, mtime=st.st_mtime, ino=st.st_ino, nlink=st.st_nlink, size=st.st_size, rdev=st.st_rdev)
        if stat.S_ISLNK(st.st_mode): r['link'] = os.readlink(p)
        if stat.S_ISREG(st.st_mode):
            try:
                with open(p, 'rb') as f: r['sha256'] = hashlib.sha256(f.read()).hexdigest()
            except OSError as e: r['readError'] = errno.errorcode[e.errno]
        if not stat.S_ISLNK(st.st_mode):
            r['xattrs'] = {k: os.getxattr(p, k).decode('latin1') for k in os.listxattr(p)}
    except OSError as e: r['error'] = errno.errorcode[e.errno]
    res[name] = r
print(json.dumps(res))
`;

interface Expected { name: string; type: string; mode: number; uid: number; gid: number; mtime: number; linkname: string; dev: [number, number]; sha256: string; size: number }
interface Seen { mode?: number; uid?: number; gid?: number; mtime?: number; ino?: number; nlink?: number; size?: number; rdev?: number; link?: string; sha256?: string; readError?: string; xattrs?: Record<string, string>; error?: string }

function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout))));
}
async function inspect(root: string, names: string[]): Promise<Record<string, Seen>> {
  return JSON.parse(await sh('python3', ['-c', INSPECT_PY, root, ...names])) as Record<string, Seen>;
}

/** A blob server honouring single Range requests with 206; counts the bytes it sends. */
function blobServer(blob: Buffer): Promise<{ server: Server; url: string; served: { bytes: number; requests: number } }> {
  const served = { bytes: 0, requests: 0 };
  const server = createServer((req, res) => {
    served.requests++;
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
      served.bytes += blob.length;
      return;
    }
    const a = Number(m[1]);
    const b = Math.min(Number(m[2]), blob.length - 1);
    if (a > b) return void res.writeHead(416).end();
    res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${blob.length}`, 'content-length': b - a + 1 });
    served.bytes += b - a + 1;
    res.end(blob.subarray(a, b + 1));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    resolve({ server, url: `http://127.0.0.1:${addr.port}/v2/x/blobs/sha256:abc`, served });
  }));
}

for (const { backend, skip: skipReason } of BACKENDS) describe(`snapshotter fs: a layer mounted through FUSE (${backend})`, { skip: skipReason }, () => {
  let dir = '';
  let blob: Buffer;
  let layer: IndexedLayer;
  let reader: ZtocReader;
  let expected: Expected[];
  let srv: Awaited<ReturnType<typeof blobServer>>;
  let mounted: MountedLayer | undefined;
  let faultMount: MountedLayer | undefined;
  let overlayMounted = false;
  const mnt = (): string => join(dir, 'mnt');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), `soci-fs-${backend}-`));
    await sh('python3', ['-c', FIXTURE_PY, dir]);
    blob = await new Promise<Buffer>((resolve, reject) => {
      const gz = createGzip({ level: 6 });
      const chunks: Buffer[] = [];
      gz.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
      gz.end(readFileSync(join(dir, 'layer.tar')));
    });
    writeFileSync(join(dir, 'layer.tar.gz'), blob);
    expected = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Expected[];
    const res = await indexLayer((async function* () { yield blob; })(), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', spanSize: SPAN });
    assert.equal(res.status, 'indexed');
    layer = res as IndexedLayer;
    reader = ZtocReader.fromBytes(layer.ztoc);
    assert.ok(reader.spans.length >= 8, `want many spans, got ${reader.spans.length}`);
    srv = await blobServer(blob);
    const tree = buildLayerTree(reader.ztoc.toc);
    assert.deepEqual(tree.rejected, []);
    const fetcher = new SpanFetcher({ reader, source: new HttpRangeSource(srv.url, { timeoutMs: 2000, retries: 1 }), layerDigest: layer.layerDigest, cacheDir: join(dir, 'spans'), memorySpans: 4 });
    mounted = await mountLayer(mnt(), tree, fetcher, { readTimeoutMs: 5000, backend });
  });

  after(async () => {
    if (overlayMounted) await sh('umount', [join(dir, 'merged')]).catch(() => undefined);
    await faultMount?.unmount();
    await mounted?.unmount();
    if (srv) await new Promise((r) => srv.server.close(r));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a small file fetches only the spans it covers', async () => {
    const small = reader.find('data/small.txt');
    assert.ok(small);
    const first = reader.spanAt(small.uncompressedOffset);
    const last = reader.spanAt(small.uncompressedOffset + small.uncompressedSize - 1);
    let need = 0;
    for (let id = first; id <= last; id++) need += (reader.spans[id]?.end ?? 0) - (reader.spans[id]?.start ?? 0);
    assert.equal(srv.served.bytes, 0, 'mounting reads no span');
    const seen = await inspect(mnt(), ['data/small.txt']);
    assert.equal(seen['data/small.txt']?.sha256, expected.find((e) => e.name === 'data/small.txt')?.sha256);
    assert.equal(srv.served.bytes, need);
    assert.ok(srv.served.bytes * 4 < blob.length, `${srv.served.bytes} of ${blob.length} bytes served`);
  });

  test('every entry matches the tar: content, type, mode, owner, mtime, links, devices', async () => {
    const seen = await inspect(mnt(), expected.map((e) => e.name));
    const typeBits: Record<string, number> = { reg: 0o100000, dir: 0o040000, symlink: 0o120000, hardlink: 0o100000, fifo: 0o010000, char: 0o020000 };
    for (const e of expected) {
      const s = seen[e.name] as Seen;
      assert.equal(s.error, undefined, `${e.name}: ${s.error}`);
      assert.equal(s.mode, typeBits[e.type]! | e.mode, `${e.name} mode ${s.mode?.toString(8)}`);
      if (e.type === 'hardlink') continue;
      assert.equal(s.uid, e.uid, `${e.name} uid`);
      assert.equal(s.gid, e.gid, `${e.name} gid`);
      assert.equal(s.mtime, e.mtime, `${e.name} mtime`);
      if (e.type === 'reg') {
        assert.equal(s.size, e.size, `${e.name} size`);
        assert.equal(s.sha256, e.sha256, `${e.name} content`);
      }
      if (e.type === 'symlink') assert.equal(s.link, e.linkname, `${e.name} target`);
      if (e.type === 'char') assert.equal(s.rdev, (e.dev[0] << 8) | e.dev[1], `${e.name} rdev`);
    }
    assert.equal(seen['data/hard']?.ino, seen['data/r300k']?.ino, 'hard link shares the inode');
    assert.equal(seen['data/hard']?.nlink, 2);
    assert.equal(seen['data/r300k']?.nlink, 2);
    assert.equal(seen['data/hard']?.sha256, seen['data/r300k']?.sha256);
    assert.equal(seen['xattr-file']?.xattrs?.['user.test'], 'hello-xattr');
  });

  test('whiteouts and opaque directories in overlay form', async () => {
    const seen = await inspect(mnt(), ['wh/gone', 'wh/.wh.gone', 'opq', 'opq/.wh..wh..opq', 'wh']);
    assert.equal(seen['wh/gone']?.mode, 0o020000, 'whiteout is a char device');
    assert.equal(seen['wh/gone']?.rdev, 0, 'whiteout is 0:0');
    assert.equal(seen['wh/.wh.gone']?.error, 'ENOENT');
    assert.equal(seen['opq/.wh..wh..opq']?.error, 'ENOENT');
    assert.equal(seen.opq?.xattrs?.['trusted.overlay.opaque'], 'y');
    assert.equal(seen.wh?.xattrs?.['trusted.overlay.opaque'], undefined);
    const list = (await sh('ls', ['-a', join(mnt(), 'opq')])).split('\n').filter(Boolean).sort();
    assert.deepEqual(list, ['.', '..', 'new']);
  });

  test('writes are refused', async () => {
    // never spawnSync here: it would block the thread that serves the FUSE requests
    await assert.rejects(sh('sh', ['-c', `echo x > ${join(mnt(), 'data/small.txt')}`]), /Read-only file system/);
    await assert.rejects(sh('mkdir', [join(mnt(), 'newdir')]), /Read-only file system/);
    await assert.rejects(sh('touch', [join(mnt(), 'data/r300k')]), /Read-only file system/);
  });

  test('overlay with the FUSE mount as lowerdir: whiteout hides, writes go up', async () => {
    for (const d of ['upper', 'work', 'merged', 'below/wh']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'below/wh/gone'), 'should be hidden');
    writeFileSync(join(dir, 'below/wh/other'), 'visible');
    mkdirSync(join(dir, 'below/opq'));
    writeFileSync(join(dir, 'below/opq/old'), 'hidden by opaque');
    await sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${mnt()}:${join(dir, 'below')},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`, join(dir, 'merged')]);
    overlayMounted = true;
    const m = join(dir, 'merged');
    // (only child processes look into the overlay: a sync call here would block the FUSE server)
    const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
    const o = await inspect(m, ['wh/gone', 'wh/other', 'wh/kept', 'opq/old', 'opq/new', 'data/small.txt']);
    assert.equal(o['wh/gone']?.error, 'ENOENT', 'whited-out file hidden');
    assert.equal(o['wh/other']?.sha256, sha('visible'));
    assert.equal(o['wh/kept']?.sha256, sha('kept'));
    assert.equal(o['opq/old']?.error, 'ENOENT', 'opaque dir hides lower content');
    assert.equal(o['opq/new']?.sha256, sha('new in opaque dir'));
    assert.equal(o['data/small.txt']?.sha256, sha('hello soci\n'));
    await sh('sh', ['-c', `echo upper > ${join(m, 'data/written')} && echo changed > ${join(m, 'data/small.txt')}`]);
    assert.equal(readFileSync(join(dir, 'upper/data/written'), 'utf8'), 'upper\n');
    assert.equal(readFileSync(join(dir, 'upper/data/small.txt'), 'utf8'), 'changed\n');
    assert.equal((await inspect(mnt(), ['data/small.txt']))['data/small.txt']?.sha256, expected.find((e) => e.name === 'data/small.txt')?.sha256, 'lower untouched');
    await sh('umount', [m]);
    overlayMounted = false;
  });

  test('figures: reading every file through the mount vs from the extracted tar', async () => {
    const ex = join(dir, 'extracted');
    mkdirSync(ex);
    await sh('tar', ['-xpf', join(dir, 'layer.tar'), '-C', ex]);
    const readAll = async (root: string): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await sh('sh', ['-c', `find "${root}" -type f -exec cat {} + > /dev/null`]);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const disk = await readAll(ex);
    const fuse = await readAll(mnt());
    const fuseWarm = await readAll(mnt());
    console.log(`[figures ${backend}] blob ${blob.length} B, ${reader.spans.length} spans of ${SPAN} B; read all files: extracted ${disk.toFixed(1)} ms, FUSE (spans partly cached) ${fuse.toFixed(1)} ms, FUSE again ${fuseWarm.toFixed(1)} ms; bytes served ${srv.served.bytes} in ${srv.served.requests} requests`);
    assert.ok(srv.served.requests <= reader.spans.length, `${srv.served.requests} requests for ${reader.spans.length} spans: none fetched twice`);
  });

  test('fault: with the server gone a read is EIO within the deadline', async () => {
    const gone = await blobServer(blob);
    await new Promise((r) => gone.server.close(r));
    const tree = buildLayerTree(reader.ztoc.toc);
    const fetcher = new SpanFetcher({ reader, source: new HttpRangeSource(gone.url, { timeoutMs: 1000, retries: 1, backoffMs: () => 50 }), layerDigest: layer.layerDigest });
    faultMount = await mountLayer(join(dir, 'mnt-fault'), tree, fetcher, { readTimeoutMs: 3000, backend });
    const t0 = Date.now();
    const seen = await inspect(faultMount.mountpoint, ['tail/big']);
    const ms = Date.now() - t0;
    assert.equal(seen['tail/big']?.readError, 'EIO');
    assert.equal(seen['tail/big']?.size, 200 * 1024, 'metadata still served');
    assert.ok(ms < 5000, `EIO after ${ms} ms`);
    await faultMount.unmount();
    faultMount = undefined;
  });
});
