/**
 * Span restore (§5.3) with both engines: every span of every fixture, restored from exactly its
 * compressed bytes blob[start, end) and its checkpoint, equals the real uncompressed bytes; damaged or
 * short span bytes raise CorruptLayer; span geometry follows §6. The native engine's two span
 * inflaters (zlib's and, when built, ISA-L's) are each held to the same.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { errorCode } from '../../oci/errors.js';
import { makeGzipFixtures, runCheckpointer } from '../../../test/oracles/gzip-fixtures.js';
import { inflateSpan, nativeEngineAvailable, nativeSpanInflaters, spansFromCheckpoints } from './index.js';

const engines = nativeEngineAvailable() ? (['native', 'js'] as const) : (['js'] as const);
let fx: ReturnType<typeof makeGzipFixtures>;
before(() => { fx = makeGzipFixtures(); });
after(() => fx.cleanup());

describe('inflateSpan', () => {
  test('every span of every fixture restores exactly, with both engines and each native span inflater (zlib, ISA-L), which also refuse bad bytes', () => {
    const inflaters = Object.entries(nativeSpanInflaters());
    if (spawnSync('pkg-config', ['--exists', 'libisal']).status === 0) {
      assert.deepEqual(inflaters.map(([n]) => n), ['zlib', 'isal'], 'ISA-L headers are installed, so soci_isal must have been built');
    }
    let primed = 0;
    for (const f of fx.fixtures) {
      const raw = gunzipSync(f.bytes);
      const { result } = runCheckpointer(f.bytes, { engine: engines[0], spanSize: f.spanSize });
      const spans = spansFromCheckpoints(result.checkpoints, result.spanDigests, f.bytes.length, raw.length);
      assert.equal(spans[0]!.start, result.headerSize);
      assert.equal(spans[spans.length - 1]!.end, f.bytes.length);
      assert.equal(spans[spans.length - 1]!.outEnd, raw.length);
      for (const s of spans) {
        const cp = result.checkpoints[s.id]!;
        if (cp.bits) primed++;
        const want = raw.subarray(s.outStart, s.outEnd);
        for (const engine of engines) {
          const got = inflateSpan(cp, f.bytes.subarray(s.start, s.end), s.outEnd - s.outStart, { engine });
          assert.ok(Buffer.from(got).equals(want), `${f.name} span ${s.id} (${engine})`);
        }
        for (const [name, fn] of inflaters) {
          const exact = new Uint8Array(want.length);
          assert.equal(fn(f.bytes.subarray(s.start, s.end), cp.bits, cp.window, exact), want.length, `${f.name} span ${s.id} (${name})`);
          assert.ok(Buffer.from(exact).equals(want), `${f.name} span ${s.id} (${name})`);
          // Given a byte more room than it holds, the stream's last span stops at the stream's end.
          if (s.id === spans.length - 1) assert.equal(fn(f.bytes.subarray(s.start, s.end), cp.bits, cp.window, new Uint8Array(want.length + 1)), want.length, `${f.name} last span (${name})`);
          const short = fn(f.bytes.subarray(s.start, Math.max(s.start + 1, s.end - 64)), cp.bits, cp.window, new Uint8Array(want.length));
          assert.ok(short < want.length, `${f.name} span ${s.id} (${name}): ${short} bytes from a cut span`);
          const garbage = fn(new Uint8Array(s.end - s.start).fill(0xff), cp.bits, cp.window, new Uint8Array(want.length));
          assert.ok(garbage < want.length, `${f.name} span ${s.id} (${name}): ${garbage} bytes from 0xff`);
        }
      }
    }
    assert.ok(primed > 10, `only ${primed} spans needed priming`);
  });

  test('wrong or short span bytes are CorruptLayer', () => {
    const f = fx.fixtures.find((x) => x.name === 'gzip-9.gz')!;
    const raw = gunzipSync(f.bytes);
    const { result } = runCheckpointer(f.bytes, { engine: engines[0], spanSize: f.spanSize });
    const spans = spansFromCheckpoints(result.checkpoints, result.spanDigests, f.bytes.length, raw.length);
    const s = spans.find((x) => result.checkpoints[x.id]!.bits !== 0)!;
    const cp = result.checkpoints[s.id]!;
    for (const engine of engines) {
      const short = f.bytes.subarray(s.start, s.end - 100);
      assert.throws(() => inflateSpan(cp, short, s.outEnd - s.outStart, { engine }), (e: unknown) => errorCode(e) === 'CORRUPT_LAYER');
      const garbage = new Uint8Array(s.end - s.start).fill(0xff);
      assert.throws(() => inflateSpan(cp, garbage, s.outEnd - s.outStart, { engine }), (e: unknown) => errorCode(e) === 'CORRUPT_LAYER');
      // One span too many: asking for more output than the span holds when the stream ends.
      const lastSpan = spans[spans.length - 1]!;
      assert.throws(() => inflateSpan(result.checkpoints[lastSpan.id]!, f.bytes.subarray(lastSpan.start), lastSpan.outEnd - lastSpan.outStart + 1, { engine }),
        (e: unknown) => errorCode(e) === 'CORRUPT_LAYER');
    }
  });

  test('spansFromCheckpoints: shared byte when bits != 0, digest count checked', () => {
    const cps = [
      { in: 10, out: 0, bits: 0, window: new Uint8Array(32768) },
      { in: 500, out: 70000, bits: 3, window: new Uint8Array(32768) },
    ];
    assert.deepEqual(spansFromCheckpoints(cps, ['sha256:a', 'sha256:b'], 900, 100000), [
      { id: 0, start: 10, end: 500, outStart: 0, outEnd: 70000, digest: 'sha256:a' },
      { id: 1, start: 499, end: 900, outStart: 70000, outEnd: 100000, digest: 'sha256:b' },
    ]);
    assert.throws(() => spansFromCheckpoints(cps, ['sha256:a'], 900, 100000), RangeError);
  });
});
