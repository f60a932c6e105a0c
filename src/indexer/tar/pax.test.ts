import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDecimalInt64, parsePaxRecords, parsePaxTime } from './pax.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const records = (s: string | Uint8Array) => {
  const r = parsePaxRecords(typeof s === 'string' ? enc.encode(s) : s);
  return r && [...r.values()].map((x) => [dec.decode(x.key), dec.decode(x.value)]);
};

test('parsePaxRecords: valid records, duplicates, odd lengths', () => {
  assert.deepEqual(records('11 path=ab\n6 a=b\n6 a=c\n'), [['path', 'ab'], ['a', 'c']]);
  assert.deepEqual(records('+0012 a=bcd\n'), [['a', 'bcd']]);
  assert.deepEqual(records('8 a=b=c\n'), [['a', 'b=c']]);
  assert.deepEqual(records('5 a=\n'), [['a', '']]);
  assert.deepEqual(records('7 k=\u00e9\n'), [['k', 'é']]);
  assert.deepEqual(records(''), []);
  assert.deepEqual(records('23 GNU.sparse.offset=0\n25 GNU.sparse.numbytes=5\n'), [['GNU.sparse.map', '0,5']]);
});

test('parsePaxRecords: what Go rejects', () => {
  for (const bad of ['4 a=\n', '7 a=b\n', '6 a=bc', '6 ab\n\n', '6 =bc\n', 'x a=b\n', '6a=bc\n', '-6 a=b\n', '12 path=a\0b\n', '8 a\0b=c\n',
    '6 a=b\n\0', '99999999999999999999 a=b\n', '25 GNU.sparse.numbytes=5\n', '25 GNU.sparse.offset=0,1\n']) {
    assert.equal(parsePaxRecords(enc.encode(bad)), undefined, JSON.stringify(bad));
  }
  assert.deepEqual(records('8 a=b\0c\n'), [['a', 'b\0c']], 'NUL allowed in other values');
});

test('parseDecimalInt64 and parsePaxTime follow Go', () => {
  assert.equal(parseDecimalInt64('+12'), 12n);
  assert.equal(parseDecimalInt64('-9223372036854775808'), -(2n ** 63n));
  assert.equal(parseDecimalInt64('9223372036854775808'), undefined);
  for (const bad of ['', '-', '1_0', ' 1', '1e3', '0x1']) assert.equal(parseDecimalInt64(bad), undefined, bad);
  assert.deepEqual(parsePaxTime('1.5'), { sec: 1n, nsec: 500000000 });
  assert.deepEqual(parsePaxTime('-1.5'), { sec: -1n, nsec: -500000000 });
  assert.deepEqual(parsePaxTime('1.1234567891'), { sec: 1n, nsec: 123456789 });
  assert.deepEqual(parsePaxTime('7.'), { sec: 7n, nsec: 0 });
  for (const bad of ['.5', '1.2.3', '1.-5', 'x', '1.5e']) assert.equal(parsePaxTime(bad), undefined, bad);
});
