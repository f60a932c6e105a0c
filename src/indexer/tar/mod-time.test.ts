import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatModTime } from './mod-time.js';

test('formatModTime: Go MarshalText in UTC', () => {
  assert.equal(formatModTime(1700000000), '2023-11-14T22:13:20Z');
  assert.equal(formatModTime(1700000000, 250000000), '2023-11-14T22:13:20.25Z');
  assert.equal(formatModTime(1700000000, 1), '2023-11-14T22:13:20.000000001Z');
  assert.equal(formatModTime(0), '1970-01-01T00:00:00Z');
  assert.equal(formatModTime(-1, -500000000), '1969-12-31T23:59:58.5Z');
  assert.equal(formatModTime(0, -1), '1969-12-31T23:59:59.999999999Z');
  assert.equal(formatModTime(-62167219200), '0000-01-01T00:00:00Z');
  assert.equal(formatModTime(253402300799, 999999999), '9999-12-31T23:59:59.999999999Z');
  assert.equal(formatModTime(253402300800), '');
  assert.equal(formatModTime(-62167219201), '');
  assert.equal(formatModTime(-62167219200, -1), '');
  assert.equal(formatModTime(2n ** 62n), '');
  assert.equal(formatModTime(-(2n ** 63n)), '');
  assert.equal(formatModTime(1700000000n), '2023-11-14T22:13:20Z');
  assert.throws(() => formatModTime(0, 1e9), RangeError);
});
