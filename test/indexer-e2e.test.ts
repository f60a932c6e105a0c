/**
 * The indexer end to end (soci-format.md §4–§6): varied tar layers generated at test time (GNU tar of a
 * tree with long, unicode and link names, whiteouts, odd sizes and span-crossing files; a Python `tarfile`
 * PAX archive with SCHILY.xattr records and fractional mtimes), each as gzip -1/-6/-9, pigz, Python gzip
 * with FNAME and as an uncompressed tar, indexed with both inflate engines, inline and on the worker pool,
 * 64 KiB spans. For every zTOC: every span's bytes hash to its digest and inflate to exactly the tar bytes
 * it claims; every regular file reads back through `ZtocReader` exactly; the TOC equals Go `archive/tar`
 * field for field and Python `tarfile` for names, types, sizes, data offsets and PAX records; the bytes are
 * identical across engines, pool and inline, chunkings and runs. Then damaged and unsupported layers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MediaType } from '../src/oci/media-types.js';
import { IndexerPool, ZtocReader, decodeZinfoBlob, decodeZtoc, indexLayer, nativeEngineAvailable, type EngineName, type IndexLayerOptions, type IndexedLayer, type LayerIndexResult, type RangeSource } from '../src/indexer/index.js';
import { Oracle, toOracleShape, type OracleResult } from './oracles/tartoc/oracle.js';
import { makeTree } from './oracles/tartoc/fixtures.js';

const SPAN = 64 * 1024;
const ENGINES: EngineName[] = nativeEngineAvailable() ? ['native', 'js'] : ['js'];
const built = Oracle.build();
const goSkip = typeof built === 'string' ? built : false;

function run(cmd: string, args: string[], opts: { cwd?: string; input?: Uint8Array } = {}): Buffer {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 1 << 28 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Python `tarfile`'s view of a tar: the independent check of names, types, sizes and data offsets. */
interface PyMember { name: string; type: string; size: number; offset_data: number; linkname: string; pax: Record<string, string>; sha256?: string }
const PY_LIST = `
import tarfile, sys, json, hashlib
out = []
with tarfile.open(sys.argv[1], 'r:') as tf:
    for m in tf:
        d = {'name': m.name, 'type': m.type.decode('latin1'), 'size': m.size, 'offset_data': m.offset_data,
             'linkname': m.linkname, 'pax': m.pax_headers}
        if m.isreg():
            d['sha256'] = hashlib.sha256(tf.extractfile(m).read()).hexdigest()
        out.append(d)
print(json.dumps(out))
`;

const PY_PAX = `
import tarfile, sys, os
files = {
    'pax/xattr-file': os.urandom(260000),
    'pax/' + 'ü' * 40 + '/' + 'n' * 230 + '.bin': b'long pax name\\n',
    'pax/repetitive': b'abcdefgh' * 40000,
    'pax/empty': b'',
    'pax/one': b'1',
    'pax/s511': os.urandom(511), 'pax/s512': os.urandom(512), 'pax/s513': os.urandom(513),
}
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as tf:
    d = tarfile.TarInfo('pax'); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 1700000000.5
    d.pax_headers = {'SCHILY.xattr.trusted.overlay.opaque': 'y'}
    tf.addfile(d)
    for i, (name, data) in enumerate(files.items()):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644; ti.uid = 1000 + i; ti.gid = 2000000 + i
        ti.mtime = 1700000000 + i + 0.123456789 * (i % 3)
        ti.uname = 'üser'; ti.gname = 'grp'
        if name == 'pax/xattr-file':
            ti.pax_headers = {'SCHILY.xattr.user.comment': 'hello wörld', 'SCHILY.xattr.security.capability': '\\x01\\x02'}
        tf.addfile(ti, __import__('io').BytesIO(data))
    s = tarfile.TarInfo('pax/link'); s.type = tarfile.SYMTYPE; s.linkname = 'xattr-file'; s.mtime = 1699999999.75
    tf.addfile(s)
    h = tarfile.TarInfo('pax/hard'); h.type = tarfile.LNKTYPE; h.linkname = 'pax/repetitive'; h.mtime = 1
    tf.addfile(h)
`;

interface Layer { label: string; tar: string; blob: string; mediaType: string; tarName: string }

class FileRange implements RangeSource {
  readonly #fh: ReturnType<typeof open>;
  constructor(path: string) { this.#fh = open(path, 'r'); }
  async read(start: number, end: number): Promise<Uint8Array> {
    const buf = new Uint8Array(end - start);
    const { bytesRead } = await (await this.#fh).read(buf, 0, buf.length, start);
    assert.equal(bytesRead, buf.length, `short read at ${start}`);
    return buf;
  }
  async close(): Promise<void> { await (await this.#fh).close(); }
}

let root = '';
const tars = new Map<string, { bytes: Buffer; py: PyMember[]; go: OracleResult | undefined }>();
const layers: Layer[] = [];
const pool = new IndexerPool({ size: 2, window: 4 });

function buildFixtures(): void {
  root = mkdtempSync(join(tmpdir(), 'indexer-e2e-'));
  makeTree(root);
  const big = join(root, 'tree', 'big');
  mkdirSync(big);
  writeFileSync(join(big, 'random-200k'), randomBytes(200_000));
  writeFileSync(join(big, 'repeat-300k'), Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(7000)));
  writeFileSync(join(big, 'exact-span'), randomBytes(SPAN));
  writeFileSync(join(big, 'span-plus-one'), randomBytes(SPAN + 1));
  const mixed = Buffer.alloc(180_000);
  for (let i = 0; i < mixed.length; i += 1000) (i % 3000 === 0 ? randomBytes(1000) : Buffer.alloc(1000, i & 0xff)).copy(mixed, i);
  writeFileSync(join(big, 'mixed-180k'), mixed);
  const gnu = join(root, 'gnu.tar');
  run('tar', ['--format=gnu', '--sort=name', '-cf', gnu, 'tree'], { cwd: root });
  const pax = join(root, 'pax.tar');
  run('python3', ['-c', PY_PAX, pax]);
  for (const [name, tar] of [['gnu', gnu], ['pax', pax]] as const) {
    const bytes = readFileSync(tar);
    const py = JSON.parse(run('python3', ['-c', PY_LIST, tar]).toString()) as PyMember[];
    tars.set(name, { bytes, py, go: typeof built === 'string' ? undefined : built.run(bytes) });
    const gz = (label: string, file: string): void => { layers.push({ label: `${name} ${label}`, tar, blob: file, mediaType: MediaType.ociLayerGzip, tarName: name }); };
    for (const level of [1, 6, 9]) {
      const out = join(root, `${name}.gzip${level}.tar.gz`);
      writeFileSync(out, run('gzip', [`-${level}`, '-c'], { input: bytes }));
      gz(`gzip -${level}`, out);
    }
    const pz = join(root, `${name}.pigz.tar.gz`);
    writeFileSync(pz, run('pigz', ['-c', '-p', '2', tar]));
    gz('pigz', pz);
    const pg = join(root, `${name}.pyfname.tar.gz`);
    run('python3', ['-c', 'import gzip,sys\nwith open(sys.argv[2],"wb") as o, gzip.GzipFile(filename="layer.tar", mode="wb", fileobj=o, mtime=0) as g: g.write(open(sys.argv[1],"rb").read())', tar, pg]);
    assert.equal(readFileSync(pg)[3]! & 0x08, 0x08, 'python gzip fixture must carry FNAME');
    gz('python gzip FNAME', pg);
    layers.push({ label: `${name} uncompressed`, tar, blob: tar, mediaType: MediaType.ociLayerTar, tarName: name });
  }
}

async function inline(path: string, opts: IndexLayerOptions, chunk = 7919): Promise<LayerIndexResult> {
  return indexLayer(createReadStream(path, { highWaterMark: chunk }), opts);
}
async function pooled(path: string, opts: IndexLayerOptions, chunk = 65536): Promise<LayerIndexResult> {
  return pool.index(createReadStream(path, { highWaterMark: chunk }), opts);
}
function indexed(r: LayerIndexResult, label: string): IndexedLayer {
  assert.equal(r.status, 'indexed', `${label}: ${r.status === 'skipped' ? `${r.code} ${r.reason}` : ''}`);
  return r as IndexedLayer;
}

before(buildFixtures);
after(async () => {
  await pool.close();
  if (typeof built !== 'string') built.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('indexer end to end', () => {
  test('fixtures exercise what they claim', () => {
    const gnu = tars.get('gnu')!.py;
    const names = gnu.map((m) => m.name);
    assert.ok(names.some((n) => Buffer.byteLength(n) > 255), 'a name over 255 bytes');
    assert.ok(names.some((n) => Buffer.byteLength(n) > 100 && Buffer.byteLength(n) <= 255), 'a name of 101–255 bytes');
    assert.ok(names.some((n) => /[^\x00-\x7f]/.test(n)), 'a unicode name');
    assert.ok(names.some((n) => n.endsWith('/.wh.gone')) && names.some((n) => n.endsWith('/.wh..wh..opq')), 'whiteouts');
    for (const t of ['1', '2', '5', '0']) assert.ok(gnu.some((m) => m.type === t), `type ${t}`);
    for (const s of [0, 1, 511, 512, 513]) assert.ok(gnu.some((m) => m.type === '0' && m.size === s), `a file of ${s} bytes`);
    assert.ok(gnu.some((m) => m.size > 2 * SPAN), 'a file crossing spans');
    const pax = tars.get('pax')!.py;
    assert.ok(pax.some((m) => Object.keys(m.pax).some((k) => k.startsWith('SCHILY.xattr.'))), 'SCHILY.xattr records');
    assert.ok(pax.some((m) => /\.\d+$/.test(m.pax.mtime ?? '')), 'fractional mtimes');
    assert.equal(layers.length, 12);
  });

  test('every layer: same zTOC bytes across engines, pool and inline, chunkings and runs', async () => {
    for (const l of layers) {
      const opts = { mediaType: l.mediaType, spanSize: SPAN };
      const results: Array<[string, IndexedLayer]> = [];
      for (const engine of ENGINES) {
        results.push([`inline ${engine}`, indexed(await inline(l.blob, { ...opts, engine }), l.label)]);
        results.push([`pool ${engine}`, indexed(await pooled(l.blob, { ...opts, engine }), l.label)]);
      }
      results.push(['inline again, 1 MiB chunks', indexed(await inline(l.blob, { ...opts, engine: ENGINES[0] }, 1 << 20), l.label)]);
      results.push(['pool again, 1-byte-odd chunks', indexed(await pooled(l.blob, { ...opts, engine: ENGINES[ENGINES.length - 1] }, 4099), l.label)]);
      const [, first] = results[0]!;
      for (const [how, r] of results) {
        assert.ok(Buffer.from(r.ztoc).equals(Buffer.from(first.ztoc)), `${l.label}: ${how} zTOC differs from ${results[0]![0]}`);
        assert.equal(r.ztocDigest, `sha256:${sha256(r.ztoc)}`);
      }
      const blob = readFileSync(l.blob);
      assert.equal(first.layerDigest, `sha256:${sha256(blob)}`, `${l.label}: layer digest`);
      assert.equal(first.compressedSize, blob.length);
      assert.equal(first.needsXattrs, true, `${l.label}: opaque whiteout or SCHILY.xattr means xattrs are needed`);
    }
  });

  test('TOC equals Go archive/tar field for field and Python tarfile for names, offsets, PAX records', { skip: goSkip }, async () => {
    const tocs = new Map<string, string>();
    for (const l of layers) {
      const r = indexed(await inline(l.blob, { mediaType: l.mediaType, spanSize: SPAN, engine: ENGINES[0] }), l.label);
      const z = decodeZtoc(r.ztoc);
      const { go, py, bytes } = tars.get(l.tarName)!;
      assert.ok(go && go.error === undefined, `${l.label}: Go failed: ${go?.error}`);
      assert.deepEqual(z.toc.map(toOracleShape), go.entries, `${l.label}: TOC vs Go`);
      assert.equal(String(z.uncompressedArchiveSize), go.archive_size, `${l.label}: archive size vs Go`);
      assert.equal(z.compressedArchiveSize, readFileSync(l.blob).length);
      assert.equal(z.compressionAlgorithm, l.mediaType === MediaType.ociLayerTar ? 'uncompressed' : 'gzip');
      assert.ok(z.uncompressedArchiveSize <= bytes.length && z.uncompressedArchiveSize >= bytes.length - 10240);
      assert.equal(z.toc.length, py.length, `${l.label}: entry count vs Python`);
      const pyType: Record<string, string> = { '0': 'reg', '1': 'hardlink', '2': 'symlink', '5': 'dir' };
      z.toc.forEach((e, i) => {
        const m = py[i]!;
        const where = `${l.label} entry ${i} ${m.name}`;
        assert.equal(e.name.replace(/\/+$/, ''), m.name, where);
        assert.equal(e.type, pyType[m.type], where);
        assert.equal(e.uncompressedSize, m.type === '0' ? m.size : e.uncompressedSize, where);
        if (m.type === '0') assert.equal(e.uncompressedOffset, m.offset_data, `${where}: data offset`);
        assert.equal(e.linkname, m.linkname, where);
        const pax = Object.entries(m.pax).sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        assert.deepEqual(e.xattrs, pax, `${where}: PAX records`);
      });
      tocs.set(`${l.tarName}`, tocs.get(l.tarName) ?? JSON.stringify(z.toc));
      assert.equal(JSON.stringify(z.toc), tocs.get(l.tarName), `${l.label}: same TOC for every encoding of one tar`);
    }
  });

  test('every span hashes to its digest and inflates to exactly the tar bytes; every file reads back', async () => {
    for (const l of layers) {
      const r = indexed(await inline(l.blob, { mediaType: l.mediaType, spanSize: SPAN, engine: ENGINES[0] }), l.label);
      const { bytes: tar, py } = tars.get(l.tarName)!;
      const blob = readFileSync(l.blob);
      for (const engine of ENGINES) {
        const reader = ZtocReader.fromBytes(r.ztoc, { engine });
        const z = reader.ztoc;
        const spans = reader.spans;
        assert.equal(spans.length, z.maxSpanId + 1);
        assert.ok(spans.length >= 4, `${l.label}: ${spans.length} spans; the fixture must cross many`);
        // Span boundaries recomputed from the checkpoints (§6), independently of the reader.
        if (z.compressionAlgorithm === 'gzip') {
          const cps = decodeZinfoBlob(z.checkpoints).checkpoints;
          cps.forEach((cp, i) => {
            const s = spans[i]!;
            assert.equal(s.start, cp.in - (cp.bits !== 0 ? 1 : 0), `span ${i} start`);
            assert.equal(s.end, i < cps.length - 1 ? cps[i + 1]!.in : blob.length, `span ${i} end`);
            assert.equal(s.outStart, cp.out, `span ${i} outStart`);
          });
        } else {
          spans.forEach((s, i) => {
            assert.equal(s.start, i * SPAN);
            assert.equal(s.end, Math.min((i + 1) * SPAN, blob.length));
          });
        }
        assert.equal(spans[0]!.outStart, 0);
        // gzip: the last span ends at the tar's end (§5.1); tar: spans are the blob's bytes (§5.4).
        assert.equal(spans.at(-1)!.outEnd, z.compressionAlgorithm === 'gzip' ? z.uncompressedArchiveSize : blob.length);
        let covered = 0;
        for (const s of spans) {
          assert.equal(s.outStart, covered, `${l.label}: spans tile the tar`);
          covered = s.outEnd;
          const compressed = blob.subarray(s.start, s.end);
          assert.equal(s.digest, `sha256:${sha256(compressed)}`, `${l.label} span ${s.id} digest`);
          const out = reader.decompressSpan(s.id, new Uint8Array(compressed));
          assert.ok(Buffer.from(out).equals(tar.subarray(s.outStart, s.outEnd)), `${l.label} (${engine}) span ${s.id} [${s.outStart}, ${s.outEnd}) bytes`);
        }
        const src = new FileRange(l.blob);
        try {
          const regs = z.toc.filter((e) => e.type === 'reg');
          assert.equal(regs.length, py.filter((m) => m.type === '0').length);
          for (const e of regs) {
            const got = await reader.readFile(src, e);
            const want = tar.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize);
            assert.ok(Buffer.from(got).equals(want), `${l.label} (${engine}): ${e.name} content`);
            const m = py.find((p) => p.name === e.name && p.type === '0')!;
            assert.equal(sha256(got), m.sha256, `${l.label} (${engine}): ${e.name} vs Python extractfile`);
            assert.equal(reader.find(e.name), e);
          }
        } finally {
          await src.close();
        }
      }
    }
  });
});

describe('damaged and unsupported layers', () => {
  const gzLayer = (): Layer => layers.find((l) => l.label === 'gnu gzip -6')!;

  async function expectCorrupt(path: string, opts: IndexLayerOptions, label: string): Promise<void> {
    for (const [how, fn] of [['inline', inline], ['pool', pooled]] as const) {
      await assert.rejects(fn(path, opts), (err: Error & { code?: string; offset?: unknown }) => {
        assert.equal(err.code, 'CORRUPT_LAYER', `${label} (${how}): ${err.message}`);
        assert.equal(typeof err.offset, 'number', `${label} (${how}): offset`);
        assert.match(err.message, /offset \d+/, `${label} (${how})`);
        return true;
      }, `${label} (${how}) must not yield a zTOC`);
    }
  }

  test('truncated and bit-flipped gzip layers are CorruptLayer with an offset, for both engines', async () => {
    const blob = readFileSync(gzLayer().blob);
    const cases: Array<[string, Buffer]> = [
      ['cut in the header', blob.subarray(0, 5)],
      ['cut mid-stream', blob.subarray(0, Math.floor(blob.length * 0.6))],
      ['cut in the trailer', blob.subarray(0, blob.length - 3)],
    ];
    for (const pos of [Math.floor(blob.length / 3), Math.floor(blob.length / 2), blob.length - 6, blob.length - 2]) {
      const b = Buffer.from(blob);
      b[pos] = b[pos]! ^ 0x55;
      cases.push([`byte ${pos} of ${blob.length} flipped`, b]);
    }
    for (const [label, bytes] of cases) {
      const p = join(root, 'damaged.tar.gz');
      writeFileSync(p, bytes);
      for (const engine of ENGINES) await expectCorrupt(p, { mediaType: MediaType.ociLayerGzip, spanSize: SPAN, engine }, `${label}, ${engine}`);
    }
  });

  test('a digest or size that does not match the descriptor is CorruptLayer', async () => {
    const l = gzLayer();
    const blob = readFileSync(l.blob);
    await expectCorrupt(l.blob, { mediaType: l.mediaType, spanSize: SPAN, expectedDigest: `sha256:${'0'.repeat(64)}` }, 'digest');
    await expectCorrupt(l.blob, { mediaType: l.mediaType, spanSize: SPAN, expectedSize: blob.length + 1 }, 'size');
    const ok = indexed(await inline(l.blob, { mediaType: l.mediaType, spanSize: SPAN, expectedDigest: `sha256:${sha256(blob)}`, expectedSize: blob.length }), 'right digest');
    assert.equal(ok.layerDigest, `sha256:${sha256(blob)}`);
  });

  test('zstd, multi-member gzip and PAX global headers are skipped with their codes', async () => {
    const l = gzLayer();
    const multi = join(root, 'multi.tar.gz');
    const a = readFileSync(l.blob);
    writeFileSync(multi, Buffer.concat([a, readFileSync(layers.find((x) => x.label === 'pax gzip -1')!.blob)]));
    const glob = join(root, 'global.tar');
    run('python3', ['-c', 'import tarfile,sys,io\nwith tarfile.open(sys.argv[1],"w",format=tarfile.PAX_FORMAT,pax_headers={"comment":"global"}) as t:\n  i=tarfile.TarInfo("f"); i.size=3; t.addfile(i, io.BytesIO(b"abc"))', glob]);
    assert.ok(readFileSync(glob).subarray(0, 1024).includes(Buffer.from('comment=global')), 'global header written');
    const globGz = join(root, 'global.tar.gz');
    writeFileSync(globGz, run('gzip', ['-c'], { input: readFileSync(glob) }));
    const cases: Array<[string, IndexLayerOptions, string]> = [
      [l.blob, { mediaType: MediaType.ociLayerZstd }, 'UNSUPPORTED_COMPRESSION'],
      [multi, { mediaType: MediaType.ociLayerGzip }, 'MULTI_MEMBER_GZIP'],
      [globGz, { mediaType: MediaType.ociLayerGzip }, 'PAX_GLOBAL_HEADER'],
      [glob, { mediaType: MediaType.ociLayerTar }, 'PAX_GLOBAL_HEADER'],
    ];
    for (const [path, opts, code] of cases) {
      for (const engine of ENGINES) {
        for (const [how, fn] of [['inline', inline], ['pool', pooled]] as const) {
          const r = await fn(path, { ...opts, spanSize: SPAN, engine });
          assert.equal(r.status, 'skipped', `${path} (${how}, ${engine})`);
          assert.equal(r.status === 'skipped' && r.code, code, `${path} (${how}, ${engine}): ${r.status === 'skipped' ? r.reason : ''}`);
        }
      }
    }
  });
});
