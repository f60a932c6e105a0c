/**
 * GzipCheckpointer on generated fixtures (test/oracles/gzip-fixtures.ts), with both engines: output
 * equals gunzip, checkpoint placement follows §5.2 (header checkpoint, strict > span size, block
 * boundaries only, no duplicate out, no trailing empty span), windows are the 32 KiB before `out`,
 * digests equal sha256 over the blob slices, results do not depend on input or output chunking or the
 * engine, limitCheckpoints works from inside onData, and damaged streams give the right error class.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { errorCode } from '../../oci/errors.js';
import { digestsFromBlob, makeGzipFixtures, runCheckpointer, type GzipFixture } from '../../../test/oracles/gzip-fixtures.js';
import { GzipCheckpointer, encodeZinfoBlob, nativeEngineAvailable, WINDOW_SIZE, type GzipZinfoResult } from './index.js';

const engines = nativeEngineAvailable() ? (['native', 'js'] as const) : (['js'] as const);
let fx: ReturnType<typeof makeGzipFixtures>;
before(() => { fx = makeGzipFixtures(); });
after(() => fx.cleanup());

function checkResult(f: GzipFixture, raw: Buffer, r: GzipZinfoResult): void {
  const cps = r.checkpoints;
  assert.ok(cps.length >= 1);
  assert.equal(r.compressedSize, f.bytes.length);
  assert.equal(r.uncompressedSize, raw.length);
  assert.equal(cps[0]!.out, 0);
  assert.equal(cps[0]!.bits, 0);
  assert.equal(r.headerSize, cps[0]!.in);
  assert.deepEqual(cps[0]!.window, new Uint8Array(WINDOW_SIZE));
  for (let i = 1; i < cps.length; i++) {
    assert.ok(cps[i]!.out - cps[i - 1]!.out > f.spanSize, `span ${i - 1} is larger than the span size`);
    assert.ok(cps[i]!.in > cps[i - 1]!.in);
    assert.ok(cps[i]!.out < raw.length, 'no checkpoint at the end of the output');
  }
  for (const cp of cps) {
    const want = new Uint8Array(WINDOW_SIZE);
    const from = Math.max(0, cp.out - WINDOW_SIZE);
    want.set(raw.subarray(from, cp.out), WINDOW_SIZE - (cp.out - from));
    assert.deepEqual(cp.window, want, `window of checkpoint at out ${cp.out}`);
  }
  assert.deepEqual(r.spanDigests, digestsFromBlob(f.bytes, cps));
}

describe('GzipCheckpointer', () => {
  test('every fixture, both engines: output, placement, windows, digests; identical across engines', () => {
    for (const f of fx.fixtures) {
      const raw = gunzipSync(f.bytes);
      const blobs: Uint8Array[] = [];
      for (const engine of engines) {
        const { result, output } = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize });
        assert.ok(output.equals(raw), `${f.name}/${engine}: output differs from gunzip`);
        checkResult(f, raw, result);
        blobs.push(encodeZinfoBlob(result.checkpoints, f.spanSize));
      }
      if (blobs.length === 2) assert.deepEqual(blobs[0], blobs[1], `${f.name}: engines disagree`);
    }
  });

  test('fixture features: long header, bits != 0, empty first block, dropped trailing checkpoint', () => {
    const get = (name: string) => runCheckpointer(fx.fixtures.find((f) => f.name === name)!.bytes, { engine: engines[0], spanSize: fx.fixtures.find((f) => f.name === name)!.spanSize }).result;
    assert.equal(get('hand-header.gz').headerSize, 10 + 2 + 100 + 9 + 10 + 2);
    assert.equal(get('py-fname.gz').headerSize, 10 + 'layer.tar'.length + 1);
    assert.ok(get('gzip-6.gz').checkpoints.some((c) => c.bits !== 0));
    const efb = get('empty-first-block.gz').checkpoints;
    assert.equal(efb.filter((c) => c.out === 0).length, 1);
    assert.ok(efb[1]!.out > 0);
    // Full-flushed 10000-byte pieces, span 25000: boundaries at 30000, 60000, 90000; the one at 90000
    // precedes the empty final block and must be dropped, its span merged into the previous one.
    assert.deepEqual(get('empty-final-block.gz').checkpoints.map((c) => c.out), [0, 30000, 60000]);
  });

  test('input chunking (1, 7, 65536 bytes) and small output buffers change nothing', () => {
    for (const f of fx.fixtures) {
      const small = f.bytes.length < 200000;
      for (const engine of engines) {
        const ref = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize });
        const refBlob = encodeZinfoBlob(ref.result.checkpoints, f.spanSize);
        const variants = [{ chunk: 7 }, { chunk: 65536 }, { chunk: 4093, outputChunkSize: 1000 }];
        if (small || f.name === 'empty-first-block.gz') variants.push({ chunk: 1 });
        if (small) variants.push({ chunk: 7, outputChunkSize: 1 });
        for (const v of variants) {
          const got = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize, ...v });
          assert.ok(got.output.equals(ref.output), `${f.name}/${engine}/${JSON.stringify(v)}: output`);
          assert.deepEqual(encodeZinfoBlob(got.result.checkpoints, f.spanSize), refBlob, `${f.name}/${engine}/${JSON.stringify(v)}: blob`);
          assert.deepEqual(got.result.spanDigests, ref.result.spanDigests);
        }
      }
    }
  });

  test('limitCheckpoints from inside onData: no checkpoint at or after the limit, earlier ones unchanged', () => {
    const f = fx.fixtures.find((x) => x.name === 'pigz.gz')!;
    for (const engine of engines) {
      const full = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize }).result;
      const limit = full.checkpoints[full.checkpoints.length - 3]!.out; // exactly at a checkpoint
      const lim = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize, limit, chunk: 3000 }).result;
      assert.deepEqual(lim.checkpoints.map((c) => c.out), full.checkpoints.filter((c) => c.out < limit).map((c) => c.out));
      assert.deepEqual(lim.spanDigests, digestsFromBlob(f.bytes, lim.checkpoints));
      assert.equal(lim.uncompressedSize, full.uncompressedSize);
    }
  });

  test('span size 0 puts a checkpoint on every boundary with new output', () => {
    const f = fx.fixtures.find((x) => x.name === 'empty-final-block.gz')!;
    for (const engine of engines) {
      const r = runCheckpointer(f.bytes, { engine, spanSize: 0 }).result;
      assert.deepEqual(r.checkpoints.map((c) => c.out), [0, 10000, 20000, 30000, 40000, 50000, 60000, 70000, 80000]);
      assert.deepEqual(r.spanDigests, digestsFromBlob(f.bytes, r.checkpoints));
    }
  });
});

describe('GzipCheckpointer errors', () => {
  function expectError(bytes: Uint8Array, code: string, what: string, chunk?: number): void {
    for (const engine of engines) {
      const c = new GzipCheckpointer({ spanSize: 65536, engine });
      let err: unknown;
      try {
        const step = chunk ?? Math.max(bytes.length, 1);
        for (let p = 0; p < bytes.length; p += step) c.write(bytes.subarray(p, p + step), () => {});
        c.end(Number.MAX_SAFE_INTEGER);
      } catch (e) {
        err = e;
      }
      assert.equal(errorCode(err), code, `${what}/${engine}: ${String(err)}`);
      assert.throws(() => c.end(0), (e: unknown) => errorCode(e) === code, `${what}/${engine}: end() after the error must throw`);
    }
  }

  test('damaged streams are CorruptLayer, second members are MULTI_MEMBER_GZIP', () => {
    const gz = fx.fixtures.find((x) => x.name === 'gzip-6.gz')!.bytes;
    const hand = fx.fixtures.find((x) => x.name === 'hand-header.gz')!.bytes;
    const mod = (b: Uint8Array, at: number, xor: number): Buffer => { const c = Buffer.from(b); c[at]! ^= xor; return c; };
    for (const at of [1000, gz.length >> 1, gz.length - 20]) expectError(mod(gz, at, 0x55), 'CORRUPT_LAYER', `flip at ${at}`);
    expectError(mod(gz, gz.length - 8, 1), 'CORRUPT_LAYER', 'bad CRC');
    expectError(mod(gz, gz.length - 4, 1), 'CORRUPT_LAYER', 'bad ISIZE');
    expectError(mod(hand, 131, 1), 'CORRUPT_LAYER', 'bad header CRC');
    expectError(mod(gz, 2, 1), 'CORRUPT_LAYER', 'bad method');
    for (const n of [0, 1, 5, 10, 11, 4000, gz.length >> 1, gz.length - 9, gz.length - 8, gz.length - 1]) {
      expectError(gz.subarray(0, n), 'CORRUPT_LAYER', `truncated at ${n}`);
    }
    expectError(Buffer.concat([gz, Buffer.from('garbage')]), 'CORRUPT_LAYER', 'trailing garbage');
    expectError(Buffer.concat([gz, Buffer.from([0x1f])]), 'CORRUPT_LAYER', 'one trailing byte');
    expectError(Buffer.concat([gz, Buffer.alloc(512)]), 'CORRUPT_LAYER', 'trailing zeros');
    expectError(Buffer.concat([gz, gz]), 'MULTI_MEMBER_GZIP', 'two members');
    expectError(Buffer.concat([gz.subarray(0, 12000)]), 'CORRUPT_LAYER', 'truncated in chunks', 1000);
    expectError(Buffer.concat([hand, hand]), 'MULTI_MEMBER_GZIP', 'two members, 1-byte tail chunks', hand.length + 1);
    expectError(Buffer.concat([hand, hand.subarray(0, 1)]), 'CORRUPT_LAYER', '1f after the trailer, then end', 1);
    expectError(fx.tar.subarray(0, 100000), 'CORRUPT_LAYER', 'not gzip');
  });

  test('error offsets point into the compressed stream', () => {
    const gz = fx.fixtures.find((x) => x.name === 'gzip-6.gz')!.bytes;
    for (const engine of engines) {
      const c = new GzipCheckpointer({ spanSize: 65536, engine });
      c.write(gz, () => {});
      assert.throws(() => c.write(Buffer.from('xy'), () => {}), (e: unknown) => (e as { offset?: number }).offset === gz.length);
    }
  });
});
