/**
 * A deliberately permissive tar writer for tests: it writes header blocks field by field, so that a test
 * can produce any format (V7, USTAR, GNU, STAR), any numeric encoding (octal with odd padding, GNU
 * base-256, raw bytes), a bad or signed checksum, PAX records with chosen length prefixes, and archives
 * with or without end-of-archive blocks. It checks nothing; the Go oracle says what the bytes mean.
 */

export type NumField = number | bigint | { raw: string | Uint8Array } | { base256: bigint };

export interface HeaderSpec {
  name?: string | Uint8Array;
  mode?: NumField;
  uid?: NumField;
  gid?: NumField;
  size?: NumField;
  mtime?: NumField;
  typeflag?: string | number;
  linkname?: string | Uint8Array;
  format?: 'v7' | 'ustar' | 'gnu' | 'star';
  uname?: string | Uint8Array;
  gname?: string | Uint8Array;
  devmajor?: NumField;
  devminor?: NumField;
  /** USTAR: 155 bytes at 345; STAR: 131 bytes at 345. */
  prefix?: string | Uint8Array;
  /** GNU atime/ctime at 345/357, STAR atime/ctime at 476/488. */
  atime?: NumField;
  ctime?: NumField;
  checksum?: 'unsigned' | 'signed' | 'bad' | { raw: string };
}

const enc = new TextEncoder();

export function bytes(s: string | Uint8Array): Uint8Array {
  return typeof s === 'string' ? enc.encode(s) : s;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function putNum(b: Uint8Array, at: number, width: number, v: NumField | undefined): void {
  if (v === undefined) v = 0;
  if (typeof v === 'object' && 'raw' in v) {
    b.set(bytes(v.raw).subarray(0, width), at);
    return;
  }
  if (typeof v === 'object' && 'base256' in v) {
    let x = BigInt.asUintN(width * 8, v.base256);
    for (let i = width - 1; i >= 0; i--) {
      b[at + i] = Number(x & 0xffn);
      x >>= 8n;
    }
    b[at] = (b[at] as number) | 0x80;
    return;
  }
  const s = v.toString(8).padStart(width - 1, '0');
  b.set(enc.encode(s).subarray(0, width), at);
}

function putStr(b: Uint8Array, at: number, width: number, s: string | Uint8Array | undefined): void {
  if (s !== undefined) b.set(bytes(s).subarray(0, width), at);
}

export function header(h: HeaderSpec): Uint8Array {
  const b = new Uint8Array(512);
  putStr(b, 0, 100, h.name ?? 'file');
  putNum(b, 100, 8, h.mode ?? 0o644);
  putNum(b, 108, 8, h.uid ?? 0);
  putNum(b, 116, 8, h.gid ?? 0);
  putNum(b, 124, 12, h.size ?? 0);
  putNum(b, 136, 12, h.mtime ?? 1700000000);
  const t = h.typeflag ?? '0';
  b[156] = typeof t === 'number' ? t : t.charCodeAt(0);
  putStr(b, 157, 100, h.linkname);
  const format = h.format ?? 'ustar';
  if (format !== 'v7') {
    b.set(enc.encode(format === 'gnu' ? 'ustar  \0' : 'ustar\x0000'), 257);
    putStr(b, 265, 32, h.uname);
    putStr(b, 297, 32, h.gname);
    putNum(b, 329, 8, h.devmajor ?? 0);
    putNum(b, 337, 8, h.devminor ?? 0);
    if (format === 'ustar') putStr(b, 345, 155, h.prefix);
    if (format === 'star') {
      putStr(b, 345, 131, h.prefix);
      if (h.atime !== undefined) putNum(b, 476, 12, h.atime);
      if (h.ctime !== undefined) putNum(b, 488, 12, h.ctime);
      b.set(enc.encode('tar\0'), 508);
    }
    if (format === 'gnu') {
      if (h.atime !== undefined) putNum(b, 345, 12, h.atime);
      if (h.ctime !== undefined) putNum(b, 357, 12, h.ctime);
      if (h.prefix !== undefined) putStr(b, 345, 155, h.prefix);
    }
  }
  const ck = h.checksum ?? 'unsigned';
  if (typeof ck === 'object') {
    putStr(b, 148, 8, ck.raw);
    return b;
  }
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += ck === 'signed' && c >= 0x80 ? c - 256 : c;
  if (ck === 'bad') sum += 1;
  // Go's writer layout: 6 octal digits, NUL, space (a negative signed sum cannot occur with spaces in it).
  b.set(enc.encode(sum.toString(8).padStart(6, '0') + '\0 '), 148);
  return b;
}

export function padTo512(data: Uint8Array): Uint8Array {
  const pad = (512 - (data.length % 512)) % 512;
  return pad === 0 ? data : concat([data, new Uint8Array(pad)]);
}

/** A header and its data (padded). The size field defaults to the data length. */
export function entry(h: HeaderSpec, data: string | Uint8Array = new Uint8Array(0)): Uint8Array {
  const d = bytes(data);
  return concat([header({ size: d.length, ...h }), padTo512(d)]);
}

/** One PAX record with a correct length prefix. */
export function paxRecord(key: string | Uint8Array, value: string | Uint8Array): Uint8Array {
  const body = concat([bytes(' '), bytes(key), bytes('='), bytes(value), bytes('\n')]);
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n++;
  return concat([bytes(String(n)), body]);
}

export function paxHeader(records: Array<[string | Uint8Array, string | Uint8Array]> | Uint8Array, typeflag = 'x'): Uint8Array {
  const data = records instanceof Uint8Array ? records : concat(records.map(([k, v]) => paxRecord(k, v)));
  return entry({ name: 'PaxHeaders/x', typeflag, format: 'ustar' }, data);
}

export function gnuLong(typeflag: 'L' | 'K', value: string | Uint8Array): Uint8Array {
  return entry({ name: '././@LongLink', typeflag, format: 'gnu' }, concat([bytes(value), new Uint8Array(1)]));
}

export const END = new Uint8Array(1024);
