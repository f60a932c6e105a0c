/**
 * The native libfuse3 layer server (native-fs.ts over build/Release/soci_fuse.node) on real FUSE mounts of
 * synthetic trees: the table serialization, a read that hangs or fails is EIO within the deadline (and
 * reported with its path), the content-file fast path answers present spans with no JS call while a cleared
 * `present` byte goes through `ensure`, readdirplus of a directory with thousands of entries, the list
 * prefetch (a listed directory's small present files reach the page cache with no READ), a layer without
 * xattrs (the kernel stops asking after one ENOSYS, so overlayfs's metacopy query at every lookup costs no
 * round trip; directories open without one either), and unmount
 * while a read is pending in JS (the reader gets EIO, nothing stays mounted, the late answer is harmless).
 * Needs root and /dev/fuse; inspection runs in child processes so this process stays free to serve reads.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { FileMetadata } from '../../indexer/types.js';
import { buildLayerTree } from './layer-tree.js';
import type { LayerContent, LayerContentFile } from './layer-fs.js';
import { mountNativeLayer, nativeFuseAvailable, serializeTree, type NativeMountedLayer } from './native-fs.js';

const skip = process.getuid?.() !== 0 || !existsSync('/dev/fuse') ? 'needs root and /dev/fuse (skipped)'
  : !nativeFuseAvailable() ? 'build/Release/soci_fuse.node missing: run npm run build:native (skipped)' : false;

const SPAN = 64 * 1024;

function entry(name: string, type: FileMetadata['type'], extra: Partial<FileMetadata> = {}): FileMetadata {
  return {
    name, type, uncompressedOffset: 0, uncompressedSize: 0, linkname: '', mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0,
    uname: '', gname: '', modTime: '2023-11-14T22:13:20.5Z', devmajor: 0, devminor: 0, xattrs: [], ...extra,
  };
}

/** A pseudo tar stream of `size` bytes whose every byte depends on its offset. */
function stream(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + (i >>> 9)) & 0xff;
  return b;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err })));
}

/** sha256 of each file, or the errno name of its read error, from a child process. */
async function hashes(root: string, names: string[]): Promise<Record<string, string>> {
  const py = 'import sys,hashlib,json,errno,os\nr={}\nfor n in sys.argv[2:]:\n  try: r[n]=hashlib.sha256(open(os.path.join(sys.argv[1],n),"rb").read()).hexdigest()\n  except OSError as e: r[n]=errno.errorcode[e.errno]\nprint(json.dumps(r))';
  const res = await sh('python3', ['-c', py, root, ...names]);
  return JSON.parse(res.out) as Record<string, string>;
}

const mounted = (p: string): boolean => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === p);

describe('native FUSE server', { skip }, () => {
  let dir = '';
  const mounts: NativeMountedLayer[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'soci-native-fs-'));
  });
  after(async () => {
    for (const m of mounts) await m.unmount();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('serializeTree: one record per inode, root first, 58k nodes quickly', () => {
    const toc: FileMetadata[] = [];
    for (let d = 0; d < 580; d++) {
      toc.push(entry(`usr/lib/d${d}/`, 'dir'));
      for (let f = 0; f < 99; f++) toc.push(entry(`usr/lib/d${d}/file-${f}.py`, 'reg', { uncompressedOffset: 512 * (d * 100 + f), uncompressedSize: 100 }));
    }
    const tree = buildLayerTree(toc);
    const t0 = performance.now();
    const t = serializeTree(tree);
    const ms = performance.now() - t0;
    console.log(`[figures] serializeTree: ${tree.byIno.size} nodes in ${ms.toFixed(1)} ms, ${t.nodes.length + t.dirents.byteLength + t.strings.length} B`);
    assert.equal(t.nodes.length, (Math.max(...tree.byIno.keys()) + 1) * 80);
    assert.equal(t.dirents.length, (tree.byIno.size - 1) * 3);
    assert.equal(t.statFiles, tree.byIno.size);
    const u32 = new Uint32Array(t.nodes.buffer);
    assert.equal(u32[20 + 17], 1, 'root record valid');
    assert.equal(u32[20 + 6]! & 0o170000, 0o040000, 'root is a directory');
  });

  test('a read whose content hangs or fails is EIO within the deadline, reported with its path', async () => {
    const data = stream(4 * SPAN);
    const tree = buildLayerTree([
      entry('ok', 'reg', { uncompressedOffset: 0, uncompressedSize: 1000 }),
      entry('sub/hang', 'reg', { uncompressedOffset: SPAN, uncompressedSize: 5000 }),
      entry('sub/fail', 'reg', { uncompressedOffset: 2 * SPAN, uncompressedSize: 5000 }),
    ]);
    const errors: Array<[string, string]> = [];
    const content: LayerContent = {
      read: (off, len) => (off === SPAN ? new Promise<Uint8Array>(() => undefined) : off === 2 * SPAN ? Promise.reject(new Error('boom')) : Promise.resolve(data.subarray(off, off + len))),
    };
    const m = await mountNativeLayer(join(dir, 'eio'), tree, content, { readTimeoutMs: 1500, onReadError: (p, e) => errors.push([p, (e as Error).message]) });
    mounts.push(m);
    const t0 = Date.now();
    const h = await hashes(m.mountpoint, ['ok', 'sub/hang', 'sub/fail']);
    const ms = Date.now() - t0;
    assert.equal(h.ok, sha(data.subarray(0, 1000)));
    assert.equal(h['sub/hang'], 'EIO');
    assert.equal(h['sub/fail'], 'EIO');
    // the kernel retries a failed read-ahead once with a plain read, so a hang can cost two deadlines
    // (generous upper bound: this checks "no hang", not speed; a loaded machine adds seconds)
    assert.ok(ms >= 1400 && ms < 2 * 1500 + 10_000, `EIO after ${ms} ms`);
    assert.deepEqual([...new Set(errors.map((e) => e[0]))].sort(), ['/sub/fail', '/sub/hang']);
    assert.match(errors.find((e) => e[0] === '/sub/fail')?.[1] ?? '', /boom/);
    assert.match(errors.find((e) => e[0] === '/sub/hang')?.[1] ?? '', /timed out/);
    assert.equal(m.stats().pending, 0);
  });

  test('content file: present spans are read in C with no JS call; a cleared byte goes through ensure', async () => {
    const nspans = 8;
    const data = stream(nspans * SPAN);
    const path = join(dir, 'content.bin');
    writeFileSync(path, Buffer.alloc(0));
    const fd = (await import('node:fs')).openSync(path, 'r+');
    const fsMod = await import('node:fs');
    const spanStarts = new Float64Array(nspans + 1).map((_, i) => i * SPAN);
    const present = new Uint8Array(new SharedArrayBuffer(nspans));
    const fill = (i: number): void => {
      fsMod.writeSync(fd, data, i * SPAN, SPAN, i * SPAN);
      Atomics.store(present, i, 1);
    };
    fsMod.ftruncateSync(fd, data.length); // all holes: absent spans read as zeros
    for (const i of [0, 1, 2, 3]) fill(i);
    const ensured: Array<[number, number]> = [];
    let reads = 0;
    const file: LayerContentFile = {
      path, spanStarts, present,
      ensure: async (first, last) => {
        ensured.push([first, last]);
        for (let i = first; i <= last; i++) if (present[i] !== 1) fill(i);
      },
    };
    const content: LayerContent = { contentFile: file, read: async (off, len) => { reads++; return data.subarray(off, off + len); } };
    const files = [
      entry('a', 'reg', { uncompressedOffset: 100, uncompressedSize: 2 * SPAN }), // spans 0-2, present
      entry('b', 'reg', { uncompressedOffset: 3 * SPAN + 10, uncompressedSize: 3000 }), // span 3, cleared below
      entry('c', 'reg', { uncompressedOffset: 5 * SPAN - 7, uncompressedSize: SPAN - 100 }), // spans 4-5, absent
      entry('d', 'reg', { uncompressedOffset: 7 * SPAN, uncompressedSize: SPAN }), // span 7, absent
    ];
    const m = await mountNativeLayer(join(dir, 'cf'), buildLayerTree(files), content, { readTimeoutMs: 5000 });
    mounts.push(m);
    const want = (e: FileMetadata): string => sha(data.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize));
    let h = await hashes(m.mountpoint, ['a']);
    assert.equal(h.a, want(files[0]!));
    assert.equal(ensured.length, 0, 'no ensure for present spans');
    assert.equal(m.stats().slowReads, 0, 'no read went to JS');
    assert.ok(m.stats().fastReads >= 1);
    Atomics.store(present, 3, 0); // evicted: the byte is cleared (the bytes are still in the file)
    h = await hashes(m.mountpoint, ['b', 'c', 'd']);
    assert.equal(h.b, want(files[1]!));
    assert.equal(h.c, want(files[2]!));
    assert.equal(h.d, want(files[3]!));
    assert.ok(ensured.some(([f, l]) => f === 3 && l === 3), `ensure(3,3) for the cleared span: ${JSON.stringify(ensured)}`);
    assert.ok(ensured.some(([f, l]) => f <= 4 && l >= 5), `ensure over spans 4-5: ${JSON.stringify(ensured)}`);
    assert.ok(ensured.some(([f, l]) => f === 7 && l === 7));
    assert.equal(reads, 0, 'content.read is not used when a content file exists');
    assert.deepEqual([...present], [1, 1, 1, 1, 1, 1, 0, 1]);
    fsMod.closeSync(fd);
  });

  test('readdirplus of a directory with 5000 entries: every name, inode, mode and size', async () => {
    const toc: FileMetadata[] = [entry('big/', 'dir')];
    for (let i = 0; i < 5000; i++) {
      toc.push(i % 10 === 0
        ? entry(`big/link-${i}`, 'symlink', { linkname: `target-${i}` })
        : entry(`big/f-${i}-${'x'.repeat(i % 40)}`, 'reg', { uncompressedOffset: 0, uncompressedSize: i, mode: 0o600 + (i % 8) }));
    }
    const tree = buildLayerTree(toc);
    const m = await mountNativeLayer(join(dir, 'rdp'), tree, { read: async (_o, l) => new Uint8Array(l) }, {});
    mounts.push(m);
    const py = 'import os,sys,json\nr={}\nfor e in os.scandir(sys.argv[1]):\n  st=e.stat(follow_symlinks=False)\n  r[e.name]=[e.inode(),st.st_ino,st.st_mode,st.st_size,os.readlink(e.path) if e.is_symlink() else ""]\nprint(json.dumps(r))';
    const res = await sh('python3', ['-c', py, join(m.mountpoint, 'big')]);
    assert.equal(res.code, 0, res.err);
    const seen = JSON.parse(res.out) as Record<string, [number, number, number, number, string]>;
    const big = tree.lookup('big')!;
    assert.equal(Object.keys(seen).length, 5000);
    for (const [name, n] of big.children!) {
      const s = seen[name];
      assert.ok(s, name);
      assert.deepEqual(s, [n.ino, n.ino, n.mode, n.size, n.linkTarget], name);
    }
    const ls = await sh('ls', ['-f', join(m.mountpoint, 'big')]);
    assert.deepEqual(ls.out.split('\n').filter(Boolean).sort(), ['.', '..', ...big.children!.keys()].sort());
    const ops = m.stats().ops;
    assert.ok(ops.readdirplus >= 1, `the kernel used readdirplus: ${JSON.stringify(ops)}`);
    assert.ok(ops.lookup < 10, `entries came with their attributes, not one LOOKUP each: ${JSON.stringify(ops)}`);
  });

  test('list prefetch: listing pushes present small files into the page cache; reading them sends no READ', async () => {
    const nspans = 4;
    const data = stream(nspans * SPAN);
    const path = join(dir, 'prefetch.bin');
    writeFileSync(path, data);
    const spanStarts = new Float64Array(nspans + 1).map((_, i) => i * SPAN);
    const present = new Uint8Array(new SharedArrayBuffer(nspans)).fill(1);
    present[3] = 0; // files in span 3 are not pushed, they go through ensure when read
    const ensured: number[] = [];
    const file: LayerContentFile = { path, spanStarts, present, ensure: async (first, last) => { for (let i = first; i <= last; i++) { ensured.push(i); present[i] = 1; } } };
    const toc: FileMetadata[] = [];
    for (let i = 0; i < 300; i++) toc.push(entry(`p/f${i}`, 'reg', { uncompressedOffset: i * 700, uncompressedSize: 1 + ((i * 37) % 690) }));
    toc.push(entry('p/big', 'reg', { uncompressedOffset: 0, uncompressedSize: 2 * SPAN })); // over the limit
    toc.push(entry('p/late', 'reg', { uncompressedOffset: 3 * SPAN + 5, uncompressedSize: 999 }));
    const m = await mountNativeLayer(join(dir, 'prefetch'), buildLayerTree(toc), { contentFile: file, read: () => Promise.reject(new Error('unused')) }, { listPrefetchBytes: 64 * 1024 });
    mounts.push(m);
    const names = toc.map((e) => e.name);
    // one child lists the whole directory, then reads every file, like tar
    const py = 'import os,sys,hashlib,json\nd=os.path.join(sys.argv[1],"p")\nr={}\nfor n in os.listdir(d):\n  r["p/"+n]=hashlib.sha256(open(os.path.join(d,n),"rb").read()).hexdigest()\nprint(json.dumps(r))';
    const res = await sh('python3', ['-c', py, m.mountpoint]);
    assert.equal(res.code, 0, res.err);
    const h = JSON.parse(res.out) as Record<string, string>;
    for (const e of toc) assert.equal(h[e.name], sha(data.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)), e.name);
    assert.equal(Object.keys(h).length, names.length);
    const st = m.stats();
    console.log(`[figures] list prefetch: ${JSON.stringify(st)}`);
    const small = toc.filter((e) => e.name.startsWith('p/f'));
    const inPresent = small.filter((e) => e.uncompressedOffset + e.uncompressedSize <= 3 * SPAN).length;
    assert.ok(inPresent > 200 && inPresent < 300);
    assert.equal(st.pushed, inPresent, `every small file in present spans pushed: ${JSON.stringify(st)}`);
    assert.deepEqual(ensured, [3], 'span 3 fetched once, on the first read that needed it');
    // READs: p/big (2 spans, up to a few requests), the first file read in span 3 (JS), and the other files
    // of span 3, which were not pushed (the span was absent when the directory was listed)
    assert.ok(st.ops.read <= 4 + (small.length - inPresent) + 1, `READs: ${JSON.stringify(st.ops)}`);
    assert.equal(st.slowReads, 1, 'one read went to JS');
  });

  test('a layer without xattrs: the kernel stops asking (EOPNOTSUPP), overlay lookups and copy-up still work; no opendir round trips', async () => {
    const data = stream(SPAN);
    const toc: FileMetadata[] = [];
    for (let d = 0; d < 10; d++) for (let i = 0; i < 20; i++) toc.push(entry(`d${d}/f${i}`, 'reg', { uncompressedOffset: d * 20 + i, uncompressedSize: 100 }));
    const plain = await mountNativeLayer(join(dir, 'nox'), buildLayerTree(toc), { read: async (o, l) => data.subarray(o, o + l) }, {});
    mounts.push(plain);
    // the same files in a layer where one file has an xattr: every query is answered, absent names are ENODATA
    const withX = [...toc, entry('x', 'reg', { xattrs: [['SCHILY.xattr.user.k', 'v']] })];
    const xmount = await mountNativeLayer(join(dir, 'withx'), buildLayerTree(withX), { read: async (o, l) => data.subarray(o, o + l) }, {});
    mounts.push(xmount);
    const py = 'import os,sys,json,errno\ndef q(f):\n  try: return f()\n  except OSError as e: return errno.errorcode[e.errno]\nr={}\nfor m in sys.argv[1:]:\n  p=os.path.join(m,"d0/f0")\n  r[m]=[q(lambda: os.listxattr(p)), q(lambda: os.getxattr(p,"user.k").decode()), q(lambda: os.getxattr(os.path.join(m,"x"),"user.k").decode())]\nprint(json.dumps(r))';
    const res = await sh('python3', ['-c', py, plain.mountpoint, xmount.mountpoint]);
    assert.equal(res.code, 0, res.err);
    const seen = JSON.parse(res.out) as Record<string, unknown[]>;
    assert.deepEqual(seen[plain.mountpoint], ['ENOTSUP', 'ENOTSUP', 'ENOENT'], 'no xattrs: not supported, as on a filesystem without them');
    assert.deepEqual(seen[xmount.mountpoint], [[], 'ENODATA', 'v']);

    // Through overlayfs (which asks every lower regular file for trusted.overlay.metacopy at lookup): every
    // file reads back, a copy-up of a lower file works, and the layer's server saw at most the first query.
    const before = plain.stats().ops.other;
    for (const d of ['ov-upper', 'ov-work', 'ov-merged']) await sh('mkdir', ['-p', join(dir, d)]);
    const merged = join(dir, 'ov-merged');
    const mnt = await sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${plain.mountpoint},upperdir=${join(dir, 'ov-upper')},workdir=${join(dir, 'ov-work')}`, merged]);
    assert.equal(mnt.code, 0, mnt.err);
    try {
      const names = toc.map((e) => e.name);
      const h = await hashes(merged, names);
      for (const e of toc) assert.equal(h[e.name], sha(data.subarray(e.uncompressedOffset, e.uncompressedOffset + 100)), e.name);
      const up = await sh('sh', ['-c', `echo more >> ${join(merged, 'd3/f7')} && tail -c 5 ${join(merged, 'd3/f7')}`]);
      assert.equal(up.code, 0, up.err);
      assert.equal(up.out, 'more\n');
      assert.equal(readFileSync(join(dir, 'ov-upper/d3/f7')).length, 105, 'copied up with the lower bytes');
      const ops = plain.stats().ops;
      assert.ok(ops.other - before <= 2, `${names.length} lookups through overlay cost ${ops.other - before} xattr round trips: ${JSON.stringify(ops)}`);
      assert.ok(ops.opendir <= 1, `directories open without a round trip: ${JSON.stringify(ops)}`);
    } finally {
      await sh('umount', [merged]);
    }
  });

  test('unmount while a read is pending: the reader gets EIO, nothing stays mounted, a late answer is harmless', async () => {
    const data = stream(SPAN);
    let release: ((b: Uint8Array) => void) | undefined;
    const errors: string[] = [];
    const content: LayerContent = { read: () => new Promise<Uint8Array>((r) => (release = r)) };
    const m = await mountNativeLayer(join(dir, 'pend'), buildLayerTree([entry('f', 'reg', { uncompressedOffset: 0, uncompressedSize: 1000 })]), content, { readTimeoutMs: 30_000, onReadError: (p) => errors.push(p) });
    const reader = hashes(m.mountpoint, ['f']);
    const t0 = Date.now();
    while (m.stats().pending === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(m.stats().pending, 1, 'the read waits in JS');
    assert.equal(mounted(m.mountpoint), true);
    const t1 = Date.now();
    await m.unmount();
    const h = await reader;
    assert.ok(Date.now() - t1 < 5000, `unmount took ${Date.now() - t1} ms`);
    assert.ok(h.f === 'EIO' || h.f === 'ENOTCONN' || h.f === 'ECONNABORTED', `reader saw ${h.f}`);
    assert.equal(mounted(m.mountpoint), false, 'no mount left');
    release?.(data.subarray(0, 1000)); // the late completion finds no request: nothing happens
    await new Promise((r) => setTimeout(r, 50));
    await m.unmount(); // twice is fine
    assert.deepEqual(errors, []);
  });
});
