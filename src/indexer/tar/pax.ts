/**
 * PAX extended header records (`x` entries) as Go 1.19 `archive/tar` reads them (soci-format.md §7.2):
 * records `"%d %s=%s\n"` where the decimal length counts the whole record (Go `strconv.ParseInt`, so a
 * `+` sign and leading zeros pass; below 5 or past the end is an error), the key runs to the first `=`,
 * must be non-empty and NUL-free, and the values of `path`/`linkpath`/`uname`/`gname` must be NUL-free.
 * Any bad record makes the whole header corrupt. A repeated key keeps its last value.
 * `GNU.sparse.offset`/`GNU.sparse.numbytes` pairs are validated and folded into `GNU.sparse.map`, as Go does.
 *
 * Also the value parsers used when records are merged into the entry: decimal int64 (Go `ParseInt`) and
 * PAX times `%d[.%d]` (fraction cut to 9 digits, negative times allowed).
 */

/** One record, raw bytes (Go keeps them as byte strings). */
export interface PaxRecord {
  key: Uint8Array;
  value: Uint8Array;
}

/** Records keyed by the binary (latin1) string of the key bytes. */
export type PaxRecords = Map<string, PaxRecord>;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const ASCII = new TextEncoder();

function hasByte(b: Uint8Array, start: number, end: number, c: number): boolean {
  for (let i = start; i < end; i++) if (b[i] === c) return true;
  return false;
}

function keyIs(b: Uint8Array, start: number, end: number, key: string): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (b[start + i] !== key.charCodeAt(i)) return false;
  return true;
}

function latin1(b: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i] as number);
  return s;
}

/** Parse the data of a PAX `x` header; `undefined` when Go would return `ErrHeader`. */
export function parsePaxRecords(data: Uint8Array): PaxRecords | undefined {
  const out: PaxRecords = new Map();
  const sparseMap: string[] = [];
  let p = 0;
  while (p < data.length) {
    const remaining = data.length - p;
    const sp = data.indexOf(0x20, p);
    if (sp < 0) return undefined;
    // The length: Go ParseInt(base 10): optional sign, then at least one digit.
    let i = p;
    let negative = false;
    if (data[i] === 0x2b || data[i] === 0x2d) {
      negative = data[i] === 0x2d;
      i++;
    }
    if (i === sp) return undefined;
    let n = 0;
    for (; i < sp; i++) {
      const c = data[i] as number;
      if (c < 0x30 || c > 0x39) return undefined;
      if (n <= Number.MAX_SAFE_INTEGER) n = n * 10 + (c - 0x30); // past that it is > remaining anyway
    }
    if (negative) n = -n;
    if (n < 5 || n > remaining) return undefined;
    const recLen = n - (sp - p + 1); // bytes after the space, newline included
    if (recLen <= 0) return undefined;
    const rec = sp + 1;
    const nl = rec + recLen - 1;
    if (data[nl] !== 0x0a) return undefined;
    const eq = data.indexOf(0x3d, rec);
    if (eq < 0 || eq >= nl) return undefined;
    if (eq === rec) return undefined; // empty key
    const stringKey = keyIs(data, rec, eq, 'path') || keyIs(data, rec, eq, 'linkpath') || keyIs(data, rec, eq, 'uname') || keyIs(data, rec, eq, 'gname');
    if (stringKey ? hasByte(data, eq + 1, nl, 0) : hasByte(data, rec, eq, 0)) return undefined;
    const isOffset = keyIs(data, rec, eq, 'GNU.sparse.offset');
    if (isOffset || keyIs(data, rec, eq, 'GNU.sparse.numbytes')) {
      if (sparseMap.length % 2 === 0 ? !isOffset : isOffset) return undefined;
      if (hasByte(data, eq + 1, nl, 0x2c)) return undefined;
      sparseMap.push(latin1(data, eq + 1, nl));
    } else {
      const key = data.slice(rec, eq);
      out.set(latin1(data, rec, eq), { key, value: data.slice(eq + 1, nl) });
    }
    p = rec + recLen;
  }
  if (sparseMap.length > 0) {
    const key = 'GNU.sparse.map';
    out.set(key, { key: ASCII.encode(key), value: ASCII.encode(sparseMap.join(',')) });
  }
  return out;
}

/** Go `strconv.ParseInt(s, 10, 64)`; `undefined` on a syntax or range error. */
export function parseDecimalInt64(s: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const v = BigInt(s);
  return v < INT64_MIN || v > INT64_MAX ? undefined : v;
}

/** A PAX time: Unix seconds and nanoseconds as Go `time.Unix(sec, nsec)` receives them (nsec may be negative). */
export interface PaxTime {
  sec: bigint;
  nsec: number;
}

/** Go `parsePAXTime`; `undefined` where Go returns `ErrHeader`. */
export function parsePaxTime(s: string): PaxTime | undefined {
  const dot = s.indexOf('.');
  const ss = dot < 0 ? s : s.slice(0, dot);
  const sn = dot < 0 ? '' : s.slice(dot + 1);
  const sec = parseDecimalInt64(ss);
  if (sec === undefined) return undefined;
  if (sn.length === 0) return { sec, nsec: 0 };
  if (!/^[0-9]+$/.test(sn)) return undefined;
  const nsec = Number(sn.length < 9 ? sn.padEnd(9, '0') : sn.slice(0, 9));
  return { sec, nsec: ss.startsWith('-') ? -nsec : nsec };
}
