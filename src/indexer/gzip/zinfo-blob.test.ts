/**
 * The v2 checkpoint blob codec (§5.1): exact byte layout (LE, in/out/bits/window order), round trip,
 * legacy v1 decoding by length, and rejection of malformed blobs.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeZinfoBlob, encodeZinfoBlob, zinfoBlobSize } from './index.js';

function win(seed: number): Uint8Array {
  const w = new Uint8Array(32768);
  for (let i = 0; i < w.length; i++) w[i] = (i * 31 + seed) & 0xff;
  return w;
}

describe('zinfo blob', () => {
  const cps = [
    { in: 10, out: 0, bits: 0, window: new Uint8Array(32768) },
    { in: 0x1_0000_0001, out: 4194305, bits: 5, window: win(7) },
  ];

  test('byte layout', () => {
    const b = encodeZinfoBlob(cps, 4194304);
    assert.equal(b.length, 12 + 32785 * 2);
    assert.equal(zinfoBlobSize(2), b.length);
    assert.deepEqual([...b.subarray(0, 12)], [2, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0]);
    assert.deepEqual([...b.subarray(12, 29)], [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const r1 = 12 + 32785;
    assert.deepEqual([...b.subarray(r1, r1 + 17)], [1, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x00, 0x40, 0, 0, 0, 0, 0, 5]);
    assert.deepEqual(b.subarray(r1 + 17, r1 + 17 + 32768), win(7));
  });

  test('round trip and legacy v1', () => {
    const b = encodeZinfoBlob(cps, 65536);
    assert.deepEqual(decodeZinfoBlob(b), { spanSize: 65536, checkpoints: cps, version: 2 });
    // v1: the header still says 2, checkpoint 0 is omitted.
    const v1 = new Uint8Array(12 + 32785);
    v1.set(b.subarray(0, 12));
    v1.set(b.subarray(12 + 32785), 12);
    assert.deepEqual(decodeZinfoBlob(v1), { spanSize: 65536, checkpoints: cps, version: 1 });
  });

  test('malformed blobs and values', () => {
    const b = encodeZinfoBlob(cps, 65536);
    assert.throws(() => decodeZinfoBlob(b.subarray(0, 11)), RangeError);
    assert.throws(() => decodeZinfoBlob(b.subarray(0, b.length - 1)), RangeError);
    const badBits = Uint8Array.from(b);
    badBits[12 + 16] = 8;
    assert.throws(() => decodeZinfoBlob(badBits), RangeError);
    assert.throws(() => encodeZinfoBlob([{ ...cps[0]!, window: new Uint8Array(10) }], 1), RangeError);
    assert.throws(() => encodeZinfoBlob([{ ...cps[0]!, in: -1 }], 1), RangeError);
    assert.throws(() => encodeZinfoBlob([{ ...cps[0]!, bits: 9 }], 1), RangeError);
    assert.deepEqual(decodeZinfoBlob(encodeZinfoBlob([], 0)), { spanSize: 0, checkpoints: [], version: 2 });
  });
});
