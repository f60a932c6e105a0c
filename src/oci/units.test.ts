import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseByteSize } from './units.js';

test('byte sizes: plain, binary units in any case, fractions; junk and inexact values refused', () => {
  assert.equal(parseByteSize('4194304'), 4194304);
  assert.equal(parseByteSize('4MiB'), 4 * 1024 ** 2);
  assert.equal(parseByteSize(' 10 g '), 10 * 1024 ** 3);
  assert.equal(parseByteSize('1.5KiB'), 1536);
  assert.equal(parseByteSize('2TB'), 2 * 1024 ** 4);
  assert.equal(parseByteSize('four'), undefined);
  assert.equal(parseByteSize('-1'), undefined);
  assert.equal(parseByteSize('4 parsecs'), undefined);
  assert.equal(parseByteSize('9999999999TiB'), undefined);
});
