/**
 * The tar TOC builder against Go 1.19 `archive/tar` (soci-format.md §4.2, §7): every fixture is parsed by
 * the Go oracle (test/oracles/tartoc/main.go, built here) and by `TarTocBuilder` fed in several chunkings;
 * entries, every field, and the archive size must be equal, or both must fail (with the error code the
 * oracle's failure maps to). Fixtures: GNU tar and Python tarfile archives, hand-made headers for each
 * parsing rule, truncations at many offsets, and random archives with random damage (fast-check).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Oracle, expectedFromOracle, runBuilder, type Expected, type OracleResult } from './oracles/tartoc/oracle.js';
import { LONG_DIR, LONG_FILE, LONG_TARGET, gnuTarFixtures, pythonFixtures, sparseFixtures, type Fixture } from './oracles/tartoc/fixtures.js';
import { END, bytes, concat, entry, gnuLong, header, paxHeader, paxRecord, type HeaderSpec } from './oracles/tartoc/tar-writer.js';

const built = Oracle.build();
const skip = typeof built === 'string' ? built : false;
const oracle = built as Oracle;
let root = '';

before(() => {
  root = mkdtempSync(join(tmpdir(), 'tartoc-fixtures-'));
});
after(() => {
  if (typeof built !== 'string') built.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

function plain(b: Uint8Array): Uint8Array {
  return b[0] === 0x1f && b[1] === 0x8b ? new Uint8Array(gunzipSync(b)) : b;
}

function chunkings(len: number): number[][] {
  const list = [[1 << 20], [511], [513], [7, 1000, 3, 512, 4096]];
  if (len <= 64 * 1024) list.push([1]);
  return list;
}

/** Compare the builder with the oracle result for one tar; returns the expectation for further checks. */
function check(label: string, tar: Uint8Array, r: OracleResult): Expected {
  const exp = expectedFromOracle(r);
  for (const sizes of chunkings(tar.length)) {
    const got = runBuilder(tar, sizes);
    const where = `${label} (chunks ${sizes.join(',')})`;
    if (exp.ok) {
      assert.ok(got.ok, `${where}: builder failed (${got.ok ? '' : got.message}) but Go read ${exp.entries.length} entries`);
      assert.deepEqual(got.entries, exp.entries, where);
      assert.equal(got.size, exp.size, `${where}: archive size`);
      if (got.endedEarly !== undefined) assert.equal(String(got.endedEarly), exp.size, `${where}: onEnd size`);
    } else {
      assert.ok(!got.ok, `${where}: builder succeeded but expected ${exp.code} (Go: ${r.error ?? 'entry ' + exp.entries})`);
      assert.equal(got.code, exp.code, `${where}: ${got.message}; Go: ${r.error}`);
    }
  }
  return exp;
}

function checkAll(fixtures: Fixture[]): Array<{ f: Fixture; r: OracleResult; exp: Expected }> {
  const results = oracle.runMany(fixtures.map((f) => plain(f.bytes)));
  return fixtures.map((f, i) => {
    const r = results[i] as OracleResult;
    return { f, r, exp: check(f.label, plain(f.bytes), r) };
  });
}

describe('tar TOC builder = Go archive/tar', { skip }, () => {
  test('GNU tar archives in every format, plain and gzip', () => {
    const res = checkAll(gnuTarFixtures(join(root, 'gnu')));
    const byLabel = new Map(res.map((x) => [x.f.label, x]));
    for (const format of ['gnu', 'posix']) {
      const x = byLabel.get(`GNU tar --format=${format}`);
      assert.ok(x?.exp.ok, format);
      const names = x.exp.entries.map((e) => e.name);
      assert.ok(names.includes(`tree/${LONG_DIR}/${LONG_FILE}`), `${format}: the >255-byte name is present`);
      assert.ok(x.exp.entries.some((e) => e.linkname === LONG_TARGET && e.type === 'symlink'), `${format}: long link target`);
      assert.ok(x.exp.entries.some((e) => e.type === 'hardlink'), `${format}: hard link`);
      assert.ok(names.includes('tree/opaque/.wh..wh..opq') && names.includes('tree/.wh.gone'), `${format}: whiteouts`);
    }
    // GNU tar pads to 10 KiB records; the archive size stops after the two zero blocks.
    const gnu = byLabel.get('GNU tar --format=gnu');
    assert.ok(gnu?.exp.ok && Number(gnu.exp.size) < gnu.f.bytes.length, 'record padding is excluded from the archive size');
    const posix = byLabel.get('GNU tar --format=posix with pax-option times');
    assert.ok(posix?.exp.ok && posix.exp.entries.some((e) => e.mod_time === '2023-11-14T22:13:20.123456789Z'), 'mtime cut at 9 digits');
  });

  test('Python tarfile archives: PAX records, times, ids, base-256, devices, prefix split', () => {
    const res = checkAll(pythonFixtures(join(root, 'py')));
    const get = (name: string) => res.find((x) => x.f.label.endsWith(name)) as { exp: Expected; r: OracleResult };
    const pax = get('py-pax.tar').exp;
    assert.ok(pax.ok);
    const e = (n: string) => pax.entries.find((x) => x.name === n);
    assert.equal(e('frac')?.mod_time, '2023-11-14T22:13:20.25Z');
    assert.equal(e('frac-long')?.mod_time, '2023-11-14T22:13:20.123456789Z');
    assert.equal(e('neg-frac')?.mod_time, '1969-12-31T23:59:58.5Z');
    assert.equal(e('neg-small')?.mod_time, '1969-12-31T23:59:59.999999999Z');
    assert.equal(e('far-future')?.mod_time, '');
    assert.equal(e('far-past')?.mod_time, '');
    assert.equal(e('year-0')?.mod_time, '0000-01-01T00:00:00Z');
    assert.equal(e('big-ids')?.uid, 7);
    assert.equal(e('neg-ids')?.uid, 4294967295);
    assert.equal(e('regA')?.type, 'reg');
    assert.ok(e('xattr')?.xattrs.some(([k, v]) => k === 'SCHILY.xattr.user.x' && v === 'value'));
    assert.ok(e('xattr')?.xattrs.some(([k, v]) => k === 'zz' && v === ''), 'empty-valued records are kept');
    assert.equal(e('dev/char')?.devmajor, '1');
    assert.equal(e('dev/block')?.type, 'block');
    const gnu = get('py-gnu.tar').exp;
    assert.ok(gnu.ok && gnu.entries.some((x) => x.name === 'big' && x.mod_time === '1969-12-31T23:43:20Z' && x.uid === 7), 'GNU base-256 uid and negative mtime');
    const ustar = get('py-ustar.tar').exp;
    assert.ok(ustar.ok && ustar.entries[0]?.name.startsWith('seg000/seg001/') && ustar.entries[0].name.length > 100, 'USTAR prefix join');
    const global = get('py-global.tar').exp;
    assert.ok(!global.ok && global.code === 'PAX_GLOBAL_HEADER');
  });

  test('GNU sparse archives are skipped (old S and PAX sparse)', () => {
    const res = checkAll(sparseFixtures(join(root, 'sparse')));
    for (const x of res) assert.ok(!x.exp.ok && x.exp.code === 'SPARSE_ENTRY', x.f.label);
  });

  test('hand-made headers: each parsing rule', () => {
    const body = (n: number) => new Uint8Array(n).fill(0x41);
    const cases: Array<[string, Uint8Array, Expected['ok'] | string]> = [
      ['v7 header', concat([entry({ format: 'v7', name: 'v7file' }, body(3)), entry({ format: 'v7', name: 'v7dir/', typeflag: 0 }), END]), true],
      ['v7 typeflag NUL + trailing slash with a size: dir, no data', concat([entry({ format: 'v7', name: 'd/', typeflag: 0, size: 5 }), END]), true],
      ['typeflag NUL dir with size followed by its data: corrupt', concat([entry({ name: 'd/', typeflag: 0 }, body(100)), END]), 'CORRUPT_LAYER'],
      ['dir with a size field: no data skipped', concat([entry({ name: 'd/', typeflag: '5', size: 4096 }), entry({ name: 'f' }, body(1)), END]), true],
      ['signed checksum', concat([entry({ name: 'sígnéd', checksum: 'signed', uname: 'é' }, body(1)), END]), true],
      ['bad checksum', concat([entry({ name: 'f', checksum: 'bad' }, body(1)), END]), 'CORRUPT_LAYER'],
      ['checksum with spaces around', concat([(() => { const h = header({ name: 'f', size: 0 }); let s = 0; h.fill(0x20, 148, 156); for (const c of h) s += c; h.set(bytes(` ${s.toString(8)}  `.padEnd(8, '\0')), 148); return h; })(), END]), true],
      ['octal with leading spaces and trailing NULs', concat([entry({ name: 'f', mode: { raw: '   644\0\0' }, uid: { raw: '\0\0\0\x0012 ' }, size: { raw: ' 3\0' } }, body(3)), END]), true],
      ['octal cut at an inner NUL', concat([entry({ name: 'f', mode: { raw: '12\x0034 ' } }, body(0)), END]), true],
      ['octal with an inner space', concat([entry({ name: 'f', mode: { raw: '1 2\0' } }), END]), 'CORRUPT_LAYER'],
      ['octal with a digit 8', concat([entry({ name: 'f', uid: { raw: '0000008\0' } }), END]), 'CORRUPT_LAYER'],
      ['base-256 size, uid, negative mtime', concat([entry({ format: 'gnu', name: 'f', size: { base256: 700n }, uid: { base256: 2n ** 40n + 9n }, mtime: { base256: -86400n } }, body(700)), END]), true],
      ['base-256 negative size: corrupt', concat([entry({ format: 'gnu', name: 'f', size: { base256: -1n } }), END]), 'CORRUPT_LAYER'],
      ['base-256 negative size on a symlink', concat([entry({ format: 'gnu', name: 'l', typeflag: '2', linkname: 't', size: { base256: -5n } }), END]), 'VALUE_OUT_OF_RANGE'],
      ['base-256 size past 2^53', concat([entry({ format: 'gnu', name: 'f', size: { base256: 2n ** 60n } }), END]), 'VALUE_OUT_OF_RANGE'],
      ['base-256 overflow', concat([entry({ format: 'gnu', name: 'f', size: { raw: new Uint8Array([0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) } }), END]), 'CORRUPT_LAYER'],
      ['base-256 huge mtime', concat([entry({ format: 'gnu', name: 'f', mtime: { base256: 2n ** 62n } }), END]), true],
      ['base-256 mode past 2^53', concat([entry({ format: 'gnu', name: 'f', mode: { base256: 2n ** 55n } }), END]), 'VALUE_OUT_OF_RANGE'],
      ['USTAR prefix', concat([entry({ name: 'name', prefix: 'some/prefix' }, body(2)), END]), true],
      ['STAR 131-byte prefix and times', concat([entry({ format: 'star', name: 'n', prefix: 'p'.repeat(131), atime: 5, ctime: 6 }, body(2)), END]), true],
      ['STAR bad atime: corrupt', concat([entry({ format: 'star', name: 'n', atime: { raw: 'zz' } }), END]), 'CORRUPT_LAYER'],
      ['GNU ignores the prefix field', concat([entry({ format: 'gnu', name: 'n', atime: 1, ctime: 2 }), END]), true],
      ['GNU pre-Go1.8 prefix fallback', concat([entry({ format: 'gnu', name: 'n', prefix: 'fallback/prefix' }), END]), true],
      ['devmajor/devminor on a regular file', concat([entry({ name: 'f', devmajor: 7, devminor: 9 }), END]), true],
      ['unknown magic "ustar " with another version is V7', concat([(() => { const h = entry({ format: 'gnu', name: 'f', uname: 'nobody' }); h[263] = 0x30; h[264] = 0x30; return fixChecksum(h); })(), END]), true],
      ['GNU long name and link, NUL-cut', concat([gnuLong('L', 'long/' + 'n'.repeat(300) + '\0junk'), gnuLong('K', 'k'.repeat(200)), entry({ format: 'gnu', name: 'short', typeflag: '2', linkname: 'short' }), END]), true],
      ['empty GNU long name keeps the header name', concat([gnuLong('L', ''), entry({ format: 'gnu', name: 'kept' }), END]), true],
      ['GNU long name beats PAX path', concat([paxHeader([['path', 'from-pax']]), gnuLong('L', 'from-gnu'), entry({ name: 'hdr' }), END]), true],
      ['second x header replaces the first', concat([paxHeader([['path', 'first'], ['uid', '5']]), paxHeader([['gname', 'g2']]), entry({ name: 'hdr' }), END]), true],
      ['PAX records: all fields, empty values, duplicate key, odd keys', concat([paxHeader([['path', 'p/ä'], ['linkpath', 'lp'], ['uname', 'un'], ['gname', ''], ['uid', '4294967297'], ['gid', '+12'], ['size', '3'], ['mtime', '-1.000000001'], ['a', '1'], ['a', '2'], ['é', 'x'], ['~', 'y'], ['B', 'nul\0in value']]), entry({ name: 'hdr', size: 99, typeflag: '2' }), entry({ name: 'next' }), END]), true],
      ['PAX size override skips that much data', concat([paxHeader([['size', '600']]), header({ name: 'f', size: 1 }), body(1024), entry({ name: 'after' }), END]), true],
      ['PAX length with + and leading zeros', concat([paxHeader(bytes('+0012 uid=7\n')), entry({ name: 'f' }), END]), true],
      ['PAX length too small', concat([paxHeader(bytes('4 a=\n')), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX length past the end', concat([paxHeader(bytes('99 a=b\n')), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX record without =', concat([paxHeader(bytes('6 ab\n\n')), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX record without newline', concat([paxHeader(bytes('6 a=bc')), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX empty key', concat([paxHeader(bytes('6 =bc\n')), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX NUL in path value', concat([paxHeader([['path', 'a\0b']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX NUL in a key', concat([paxHeader([['a\0b', 'v']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX trailing NUL padding', concat([paxHeader(concat([paxRecord('a', 'b'), new Uint8Array(3)])), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX bad uid', concat([paxHeader([['uid', '12x']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX uid overflow', concat([paxHeader([['uid', '9223372036854775808']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX bad atime', concat([paxHeader([['atime', '1.2.3']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX mtime without seconds', concat([paxHeader([['mtime', '.5']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX mtime trailing dot', concat([paxHeader([['mtime', '5.']]), entry({ name: 'f' }), END]), true],
      ['PAX negative size', concat([paxHeader([['size', '-1']]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['PAX huge size', concat([paxHeader([['size', String(2n ** 62n)]]), entry({ name: 'f' }), END]), 'VALUE_OUT_OF_RANGE'],
      ['PAX GNU.sparse records', concat([paxHeader([['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', 'n'], ['GNU.sparse.realsize', '0']]), entry({ name: 'f' }, concat([bytes('0\n'), new Uint8Array(510)])), END]), 'SPARSE_ENTRY'],
      ['PAX global header', concat([paxHeader([['comment', 'c']], 'g'), entry({ name: 'f' }), END]), 'PAX_GLOBAL_HEADER'],
      ['PAX global header with a bad record', concat([paxHeader(bytes('3 x\n'), 'g'), END]), 'CORRUPT_LAYER'],
      ['PAX header over 1 MiB', concat([paxHeader([['comment', 'c'.repeat(1 << 20)]]), entry({ name: 'f' }), END]), 'CORRUPT_LAYER'],
      ['unknown typeflag', concat([entry({ name: 'f', typeflag: 'V' }), END]), 'UNSUPPORTED_TYPEFLAG'],
      ['contiguous typeflag 7', concat([entry({ name: 'f', typeflag: '7' }, body(3)), END]), 'UNSUPPORTED_TYPEFLAG'],
      ['old GNU sparse typeflag S', concat([entry({ format: 'gnu', name: 'f', typeflag: 'S' }), END]), 'SPARSE_ENTRY'],
      ['non-UTF-8 name', concat([entry({ name: new Uint8Array([0x66, 0xff]) }), END]), 'VALUE_OUT_OF_RANGE'],
      ['non-UTF-8 raw name replaced by PAX path', concat([paxHeader([['path', 'ok']]), entry({ name: new Uint8Array([0x66, 0xff]) }), END]), true],
      ['BOM in a name is kept', concat([entry({ name: '\ufeffbom' }), END]), true],
      ['no end-of-archive blocks', concat([entry({ name: 'a' }, body(5)), entry({ name: 'b' })]), true],
      ['one zero block then end', concat([entry({ name: 'a' }, body(5)), new Uint8Array(512)]), true],
      ['zero block then a header: corrupt', concat([entry({ name: 'a' }), new Uint8Array(512), entry({ name: 'b' })]), 'CORRUPT_LAYER'],
      ['zero block then a partial block', concat([entry({ name: 'a' }), new Uint8Array(512), new Uint8Array(100)]), 'CORRUPT_LAYER'],
      ['garbage after the end blocks is ignored', concat([entry({ name: 'a' }), END, bytes('garbage'.repeat(300))]), true],
      ['10 KiB record padding', concat([entry({ name: 'a' }, body(3)), END, new Uint8Array(10240 - 1536 - 1024)]), true],
      ['stream ends inside padding: Go says EOF', concat([header({ name: 'a', size: 3 }), body(3), new Uint8Array(100)]), true],
      ['stream ends right after data: Go says EOF', concat([header({ name: 'a', size: 3 }), body(3)]), true],
      ['stream ends inside data', concat([header({ name: 'a', size: 3000 }), body(1000)]), 'CORRUPT_LAYER'],
      ['stream ends inside a header', concat([entry({ name: 'a' }), new Uint8Array(300).fill(1)]), 'CORRUPT_LAYER'],
      ['stream ends after a PAX header', concat([paxHeader([['path', 'x']])]), true],
      ['empty stream', new Uint8Array(0), true],
    ];
    const results = oracle.runMany(cases.map((c) => c[1]));
    cases.forEach(([label, tar, want], i) => {
      const exp = check(label, tar, results[i] as OracleResult);
      if (want === true) assert.ok(exp.ok, `${label}: Go fails (${(results[i] as OracleResult).error}) but the case says it reads`);
      else assert.ok(!exp.ok && exp.code === want, `${label}: expected ${want}, oracle says ${JSON.stringify(exp.ok ? 'ok' : exp.code)}`);
    });
  });

  test('truncation at many offsets matches Go', () => {
    const tar = concat([
      paxHeader([['path', 'pax/' + 'p'.repeat(120)], ['mtime', '1.5']]), entry({ name: 'x' }, new Uint8Array(700).fill(3)),
      gnuLong('L', 'l'.repeat(130)), entry({ format: 'gnu', name: 'y' }, new Uint8Array(512).fill(4)),
      entry({ name: 'd/', typeflag: '5' }), entry({ name: 'z' }, new Uint8Array(1).fill(5)), END,
    ]);
    const offsets: number[] = [];
    for (let o = 0; o <= tar.length; o += 37) offsets.push(o);
    for (let o = 0; o <= tar.length; o += 512) offsets.push(o, o + 1, o - 1);
    const cuts = [...new Set(offsets.filter((o) => o >= 0 && o <= tar.length))].map((o) => tar.subarray(0, o));
    const results = oracle.runMany(cuts);
    let ok = 0;
    let failed = 0;
    cuts.forEach((t, i) => {
      const exp = check(`cut at ${t.length}`, t, results[i] as OracleResult);
      if (exp.ok) ok++;
      else failed++;
    });
    assert.ok(ok > 10 && failed > 10, `both outcomes occur (ok ${ok}, failed ${failed})`);
  });

  test('property: random archives with random damage match Go', () => {
    const name = fc.oneof(
      fc.constantFrom('a', 'dir/', 'dir/file', './x', 'ü/日本', '.wh..wh..opq', '.wh.x'),
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.nat({ max: 300 }).map((n) => 'n'.repeat(n + 1)),
    );
    const num = (max: number): fc.Arbitrary<HeaderSpec['uid']> => fc.oneof(
      fc.nat({ max }),
      fc.nat({ max }).map((n) => ({ raw: ` ${n.toString(8)} ` })),
      fc.nat({ max }).map((n) => ({ raw: `${n.toString(8)}\0\0` })),
      fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }).map((n) => ({ base256: n })),
    );
    const spec = fc.record({
      name, typeflag: fc.constantFrom('0', '0', '0', 0, '1', '2', '3', '4', '5', '6', '7'),
      format: fc.constantFrom('v7', 'ustar', 'gnu', 'star') as fc.Arbitrary<HeaderSpec['format']>,
      uid: num(0o7777777), gid: num(0o7777777), mode: num(0o7777777), mtime: num(0o77777777777),
      devmajor: num(0o7777), linkname: fc.oneof(fc.constant(''), fc.string({ maxLength: 120 })),
      uname: fc.string({ maxLength: 40 }), prefix: fc.oneof(fc.constant(undefined), fc.constantFrom('pre', 'p/q', 'é')),
      dataLen: fc.oneof(fc.constantFrom(0, 1, 511, 512, 513), fc.nat({ max: 3000 })),
      pax: fc.option(fc.array(fc.tuple(
        fc.constantFrom('path', 'linkpath', 'uname', 'gname', 'uid', 'gid', 'mtime', 'atime', 'SCHILY.xattr.user.a', 'comment', 'k€y'),
        fc.oneof(fc.constantFrom('', '0', '-1', '1.5', '-2.25', '123456789012.1234567891', 'v', 'ü', '1e3'), fc.string({ maxLength: 20 })),
      ), { maxLength: 5 })),
      longName: fc.option(fc.string({ maxLength: 300 })),
    });
    const archive = fc.record({
      entries: fc.array(spec, { maxLength: 8 }),
      end: fc.constantFrom('two', 'one', 'none', 'record'),
      damage: fc.option(fc.record({ at: fc.nat(), byte: fc.nat({ max: 255 }), cut: fc.boolean() }), { freq: 2 }),
    });
    let read = 0;
    let failed = 0;
    fc.assert(fc.property(fc.array(archive, { minLength: 10, maxLength: 10 }), (batch) => {
      const tars = batch.map((a) => {
        const parts: Uint8Array[] = [];
        for (const e of a.entries) {
          if (e.pax) parts.push(paxHeader(e.pax));
          if (e.longName !== null) parts.push(gnuLong('L', e.longName));
          const headerOnly = typeof e.typeflag === 'string' && '123456'.includes(e.typeflag);
          parts.push(entry({ ...e, size: e.dataLen }, headerOnly ? new Uint8Array(0) : new Uint8Array(e.dataLen).fill(0x5a)));
          if (headerOnly) parts[parts.length - 1] = header({ ...e, size: e.dataLen });
        }
        if (a.end === 'two' || a.end === 'record') parts.push(END);
        if (a.end === 'one') parts.push(new Uint8Array(512));
        if (a.end === 'record') parts.push(new Uint8Array(4096));
        let tar = concat(parts);
        if (a.damage && tar.length > 0) {
          const at = a.damage.at % tar.length;
          if (a.damage.cut) tar = tar.subarray(0, at);
          else if (!(at % 512 === 156 && a.damage.byte === 0x53)) tar[at] = a.damage.byte; // no typeflag 'S' (Go reads a sparse map)
        }
        return tar;
      });
      const results = oracle.runMany(tars);
      tars.forEach((t, i) => {
        const exp = check(`random archive #${i}`, t, results[i] as OracleResult);
        if (exp.ok && exp.entries.length > 0) read++;
        else if (!exp.ok) failed++;
      });
    }), { numRuns: 30, seed: Number(process.env.FC_SEED ?? 20261122) });
    // A fixed seed by default (CI must not flake on how the dice fell); FC_SEED=… explores other draws.
    assert.ok(read > 20 && failed > 20, `random archives cover both outcomes (read ${read}, failed ${failed})`);
  });
});

function fixChecksum(h: Uint8Array): Uint8Array {
  const blk = h.subarray(0, 512);
  blk.fill(0x20, 148, 156);
  let s = 0;
  for (const c of blk) s += c;
  blk.set(bytes(s.toString(8).padStart(6, '0') + '\0 '), 148);
  return h;
}
