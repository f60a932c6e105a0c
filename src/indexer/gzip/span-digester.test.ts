/**
 * SpanDigester against the checkpointer's own span digests, on every generated gzip fixture: a
 * `GzipCheckpointer` with `hashSpans: false` reports its checkpoints batch by batch (odd batch sizes,
 * 1 byte to all at once), two digesters share the spans by several ownership patterns, and the merged
 * digests must equal the ones the checkpointer computes itself — including `empty-final-block.gz`, where
 * end() drops the trailing checkpoint and merges its span into the previous one. Misuse is rejected.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { digestsFromBlob, makeGzipFixtures, runCheckpointer } from '../../../test/oracles/gzip-fixtures.js';
import { GzipCheckpointer, SpanDigester, mergeSpanDigests, nativeEngineAvailable } from './index.js';

const engine = nativeEngineAvailable() ? 'native' : 'js';
let fx: ReturnType<typeof makeGzipFixtures>;
before(() => { fx = makeGzipFixtures(); });
after(() => fx.cleanup());

type Owner = (span: number) => 'a' | 'b';
const owners: Record<string, Owner> = {
  'all a': () => 'a',
  'all b': () => 'b',
  alternating: (i) => (i % 2 ? 'b' : 'a'),
  'pairs': (i) => ((i >> 1) % 2 ? 'a' : 'b'),
  'last two differ': (i) => (i % 3 === 2 ? 'b' : 'a'),
};

/** Runs the checkpointer without span hashing and two digesters beside it; returns merged digests. */
function shared(bytes: Uint8Array, spanSize: number, batch: number, owner: Owner): { digests: string[]; reported: number; kept: number } {
  const placed: Array<{ in: number; bits: number }> = [];
  const c = new GzipCheckpointer({ spanSize, engine, hashSpans: false, onCheckpoint: (cp) => placed.push({ in: cp.in, bits: cp.bits }) });
  const a = new SpanDigester();
  const b = new SpanDigester();
  let total = 0;
  let span = 0;
  for (let p = 0; p < bytes.length; p += batch) {
    const part = bytes.subarray(p, Math.min(p + batch, bytes.length));
    const from = placed.length;
    c.write(part, (out) => { total += out.length; });
    const cps = placed.slice(from).map((cp) => ({ ...cp, who: owner(span++) }));
    a.advance(part, cps.map((cp) => ({ in: cp.in, bits: cp.bits, mine: cp.who === 'a' })), c.lastCheckpointOpen);
    b.advance(part, cps.map((cp) => ({ in: cp.in, bits: cp.bits, mine: cp.who === 'b' })), c.lastCheckpointOpen);
  }
  const r = c.end(total);
  assert.deepEqual(r.spanDigests, [], 'hashSpans: false must hash nothing');
  const kept = r.checkpoints.length;
  return { digests: mergeSpanDigests(a.finish(kept), b.finish(kept)), reported: placed.length, kept };
}

describe('SpanDigester', () => {
  test('every fixture, batch sizes and ownerships: digests equal the checkpointer\'s and the §6 formula', () => {
    for (const f of fx.fixtures) {
      const ref = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize }).result;
      assert.deepEqual(ref.spanDigests, digestsFromBlob(f.bytes, ref.checkpoints));
      const batches = [f.bytes.length, 65536, 4093, 1000];
      if (f.bytes.length < 200000) batches.push(1);
      for (const batch of batches) {
        for (const [name, owner] of Object.entries(owners)) {
          const got = shared(f.bytes, f.spanSize, batch, owner);
          assert.equal(got.kept, ref.checkpoints.length);
          assert.deepEqual(got.digests, ref.spanDigests, `${f.name}, batch ${batch}, ${name}`);
        }
      }
    }
  });

  test('empty-final-block.gz: the trailing checkpoint is reported, then dropped and its span merged', () => {
    const f = fx.fixtures.find((x) => x.name === 'empty-final-block.gz')!;
    const ref = runCheckpointer(f.bytes, { engine, spanSize: f.spanSize }).result;
    assert.deepEqual(ref.checkpoints.map((c) => c.out), [0, 30000, 60000]);
    for (const batch of [f.bytes.length, 10007, 1]) {
      for (const [name, owner] of Object.entries(owners)) {
        const got = shared(f.bytes, f.spanSize, batch, owner);
        assert.equal(got.reported, 4, 'the checkpoint at 90000 is placed before end() drops it');
        assert.equal(got.kept, 3);
        assert.deepEqual(got.digests, ref.spanDigests, `batch ${batch}, ${name}`);
      }
    }
  });

  test('misuse: checkpoints outside the batch, a drop after output, unmatched merges', () => {
    const d = new SpanDigester();
    assert.throws(() => d.advance(new Uint8Array(10), [{ in: 11, bits: 0 }], false), RangeError);
    const e = new SpanDigester();
    e.advance(new Uint8Array(10), [{ in: 3, bits: 0 }, { in: 8, bits: 2 }], false);
    assert.throws(() => e.finish(1), /output after it/);
    const g = new SpanDigester();
    g.advance(new Uint8Array(10), [{ in: 3, bits: 0 }], false);
    assert.throws(() => g.finish(2), /2 spans asked for/);
    assert.throws(() => mergeSpanDigests(['sha256:a'], ['sha256:b']), /two digests/);
    assert.throws(() => mergeSpanDigests([undefined], [undefined]), /no digests/);
  });
});
