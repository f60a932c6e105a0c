/**
 * The worker pool's split of the work (reading thread: layer sha256 and a share of the span digests;
 * worker: inflate, checkpoints, tar TOC, the rest of the span digests): on every generated gzip fixture
 * that is a tar layer, plus a tar without end-of-archive blocks whose trailing checkpoint is dropped and
 * its span merged, the pool's zTOC is byte-identical to the inline one and every span digest equals the
 * §6 formula, for odd source chunk sizes and batch sizes, and the caller's buffers stay intact.
 * A corrupt or skipped layer still stops the read early and never yields a zTOC; a digest mismatch is
 * still CorruptLayer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../src/oci/errors.js';
import { MediaType } from '../src/oci/media-types.js';
import { IndexerPool, decodeZinfoBlob, decodeZtoc, indexLayer, type IndexedLayer, type LayerIndexResult } from '../src/indexer/index.js';
import { digestsFromBlob, makeGzipFixtures, runCheckpointer } from './oracles/gzip-fixtures.js';

let fx: ReturnType<typeof makeGzipFixtures>;
let merge = '';
const layers: Array<{ name: string; path: string; spanSize: number }> = [];

/** A tar with no end-of-archive blocks (one 92160-byte entry), full-flushed every 10240 bytes, empty final block. */
const PY_MERGE = String.raw`
import sys, tarfile, io, os, zlib
data = os.urandom(91648)
ti = tarfile.TarInfo('merge/file'); ti.size = len(data); ti.mtime = 1700000000
raw = ti.tobuf(tarfile.USTAR_FORMAT) + data
assert len(raw) == 92160
c = zlib.compressobj(6, zlib.DEFLATED, 31)
body = b''.join(c.compress(raw[i:i + 10240]) + c.flush(zlib.Z_FULL_FLUSH) for i in range(0, len(raw), 10240))
open(sys.argv[1], 'wb').write(body + c.flush(zlib.Z_FINISH))
`;

before(() => {
  fx = makeGzipFixtures();
  merge = join(fx.dir, 'merge.tar.gz');
  execFileSync('python3', ['-c', PY_MERGE, merge]);
  for (const f of fx.fixtures) if (f.name !== 'empty-final-block.gz') layers.push({ name: f.name, path: f.path, spanSize: f.spanSize });
  layers.push({ name: 'merge.tar.gz', path: merge, spanSize: 25000 });
});
after(() => fx.cleanup());

/** Yields `bytes` in `chunk`-sized fresh arrays and counts what was pulled. */
async function* chunks(bytes: Uint8Array, chunk: number, pulled: { n: number }): AsyncGenerator<Uint8Array> {
  for (let p = 0; p < bytes.length; p += chunk) {
    const c = new Uint8Array(bytes.subarray(p, Math.min(p + chunk, bytes.length)));
    pulled.n += c.length;
    yield c;
  }
}

async function outcome(p: Promise<LayerIndexResult>): Promise<LayerIndexResult | { error: string | undefined }> {
  try {
    return await p;
  } catch (err) {
    return { error: errorCode(err) };
  }
}

describe('IndexerPool with span digests on the reading thread', () => {
  test('the merge fixture really drops its trailing checkpoint', () => {
    const bytes = readFileSync(merge);
    const all = runCheckpointer(bytes, { engine: 'native', spanSize: 25000, archiveSize: Number.MAX_SAFE_INTEGER }).result;
    assert.deepEqual(all.checkpoints.map((c) => c.out), [0, 30720, 61440, 92160]);
    const kept = runCheckpointer(bytes, { engine: 'native', spanSize: 25000 }).result;
    assert.deepEqual(kept.checkpoints.map((c) => c.out), [0, 30720, 61440]);
  });

  for (const [batchBytes, chunk, window] of [[1 << 20, 65536, 8], [1000, 7919, 4], [4099, 1 << 20, 2], [65536, 65536, 1], [333, 4099, 3]] as const) {
    test(`every layer, batches of ${batchBytes}, source chunks of ${chunk}, window ${window}: zTOC = inline, digests = §6`, async () => {
      const pool = new IndexerPool({ size: 2, batchBytes, window });
      try {
        for (const l of layers) {
          const opts = { mediaType: MediaType.ociLayerGzip, spanSize: l.spanSize };
          const bytes = readFileSync(l.path);
          const want = await outcome(indexLayer(createReadStream(l.path, { highWaterMark: 7919 }), opts));
          const got = await outcome(pool.index(createReadStream(l.path, { highWaterMark: chunk }), opts));
          const copied = await outcome(pool.index((async function* () { yield bytes; })(), opts));
          assert.equal(bytes.byteLength, readFileSync(l.path).byteLength, 'the caller\'s buffer is not detached');
          if ('error' in want) {
            assert.equal((got as { error?: string }).error, want.error, `${l.name}: pool error`);
            assert.equal((copied as { error?: string }).error, want.error, `${l.name}: pool error (copied)`);
            continue;
          }
          assert.equal(want.status, 'indexed', l.name);
          const w = want as IndexedLayer;
          for (const r of [got, copied]) {
            const g = r as IndexedLayer;
            assert.equal(g.status, 'indexed', `${l.name}: ${JSON.stringify(r)}`);
            assert.deepEqual(Buffer.from(g.ztoc), Buffer.from(w.ztoc), `${l.name}: zTOC bytes`);
            assert.equal(g.ztocDigest, w.ztocDigest);
            assert.equal(g.layerDigest, w.layerDigest);
          }
          const z = decodeZtoc((got as IndexedLayer).ztoc);
          const cps = decodeZinfoBlob(z.checkpoints).checkpoints;
          assert.deepEqual(z.spanDigests, digestsFromBlob(bytes, cps), `${l.name}: span digests`);
          if (l.name === 'merge.tar.gz') assert.equal(z.maxSpanId, 2);
        }
      } finally {
        await pool.close();
      }
    });
  }

  test('a corrupt layer stops the read early and never yields a zTOC; so does a skip', async () => {
    const pool = new IndexerPool({ size: 1, batchBytes: 4096, window: 2 });
    try {
      const gz = readFileSync(fx.fixtures.find((f) => f.name === 'gzip-6.gz')!.path);
      const bad = Buffer.from(gz);
      bad[5000]! ^= 0x55;
      const pulled = { n: 0 };
      let offset = -1;
      await assert.rejects(pool.index(chunks(bad, 1000, pulled), { mediaType: MediaType.ociLayerGzip }), (e: unknown) => {
        offset = (e as { offset?: number }).offset ?? -1;
        return errorCode(e) === 'CORRUPT_LAYER';
      });
      // Where a flipped byte is detected depends on the data (as late as the CRC check at the end), so the
      // bound is relative to the detection: at most the in-flight batches (a starting worker allows 4
      // windows) past the error offset are read.
      assert.ok(offset >= 5000, `error offset ${offset}`);
      assert.ok(pulled.n <= offset + 12 * 4096 + 1000, `read ${pulled.n} of ${gz.length} bytes, error at ${offset}`);
      // A second gzip member is a skip; trailing bytes after it are not read.
      const two = Buffer.concat([gz, gz]);
      const pulled2 = { n: 0 };
      const r = await pool.index(chunks(two, 1000, pulled2), { mediaType: MediaType.ociLayerGzip });
      assert.equal(r.status, 'skipped');
      assert.equal((r as { code: string }).code, 'MULTI_MEMBER_GZIP');
      assert.ok(pulled2.n < two.length * 0.75, `read ${pulled2.n} of ${two.length} bytes`);
    } finally {
      await pool.close();
    }
  });

  test('a digest or size mismatch is CorruptLayer through the new path', async () => {
    const pool = new IndexerPool({ size: 1, batchBytes: 3000 });
    try {
      const path = fx.fixtures.find((f) => f.name === 'pigz.gz')!.path;
      const wrong = `sha256:${'0'.repeat(64)}`;
      await assert.rejects(pool.index(createReadStream(path), { mediaType: MediaType.ociLayerGzip, expectedDigest: wrong }), (e: unknown) => errorCode(e) === 'CORRUPT_LAYER');
      await assert.rejects(pool.index(createReadStream(path), { mediaType: MediaType.ociLayerGzip, expectedSize: 10 }), (e: unknown) => errorCode(e) === 'CORRUPT_LAYER');
      const ok = await pool.index(createReadStream(path), { mediaType: MediaType.ociLayerGzip });
      assert.equal(ok.status, 'indexed', 'the pool still works after failed jobs');
    } finally {
      await pool.close();
    }
  });
});
