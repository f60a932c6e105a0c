/**
 * One 512-byte tar header block, decoded with the rules of Go 1.19 `archive/tar` `Reader.readHeader`
 * (soci-format.md §4.2, §7.2): the checksum (the unsigned or the signed byte sum, the field itself read as
 * spaces), the format from the magic (USTAR/PAX `"ustar\0"`, STAR = that plus trailer `"tar\0"` at 508,
 * GNU `"ustar "` + `" \0"`, anything else V7), numeric fields in octal (leading/trailing spaces and NULs
 * trimmed, cut at an inner NUL) or GNU base-256 (two's complement, negative allowed), strings cut at the
 * first NUL, the name/prefix join (USTAR/PAX 155-byte prefix, STAR 131-byte prefix, GNU none except Go's
 * fallback for pre-Go 1.8 archives whose atime/ctime fields do not parse). uname/gname/devmajor/devminor
 * are read from every non-V7 header. A field Go fails to parse makes the header corrupt (Go `ErrHeader`).
 *
 * Strings stay raw bytes (views into the block, valid only while the block is) so that only the fields
 * that end up in the TOC are ever decoded.
 */
import { CorruptLayer } from '../../oci/errors.js';
import { cutAtNul } from './text.js';

export const BLOCK_SIZE = 512;

/** A Go int64: a number when it is a safe integer, else a bigint. */
export type Int64 = number | bigint;

export type TarFormat = 'v7' | 'ustar' | 'gnu' | 'star';

export const TYPE_REG = 0x30; // '0'
export const TYPE_REGA = 0x00; // '\0'
export const TYPE_LINK = 0x31; // '1'
export const TYPE_SYMLINK = 0x32; // '2'
export const TYPE_CHAR = 0x33; // '3'
export const TYPE_BLOCK = 0x34; // '4'
export const TYPE_DIR = 0x35; // '5'
export const TYPE_FIFO = 0x36; // '6'
export const TYPE_PAX = 0x78; // 'x'
export const TYPE_PAX_GLOBAL = 0x67; // 'g'
export const TYPE_GNU_LONGNAME = 0x4c; // 'L'
export const TYPE_GNU_LONGLINK = 0x4b; // 'K'
export const TYPE_GNU_SPARSE = 0x53; // 'S'

/** Types whose size field describes no data in the archive (Go `isHeaderOnlyType`). */
export function isHeaderOnlyType(t: number): boolean {
  return t >= TYPE_LINK && t <= TYPE_FIFO;
}

export interface TarHeader {
  format: TarFormat;
  typeflag: number;
  name: Uint8Array;
  linkname: Uint8Array;
  size: Int64;
  mode: Int64;
  uid: Int64;
  gid: Int64;
  /** Unix seconds. */
  mtime: Int64;
  uname: Uint8Array;
  gname: Uint8Array;
  devmajor: Int64;
  devminor: Int64;
}

const EMPTY: Uint8Array = new Uint8Array(0);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** True when all 512 bytes of `b` are zero. */
export function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < BLOCK_SIZE; i++) if (b[i] !== 0) return false;
  return true;
}

/** Go `blockPadding`: bytes from `n` up to the next multiple of 512. */
export function blockPadding(n: number): number {
  return (BLOCK_SIZE - (n % BLOCK_SIZE)) % BLOCK_SIZE;
}

/**
 * Go `parser.parseOctal` on `b[start, start+len)`: trim spaces and NULs at both ends, cut at a NUL, then
 * octal digits only (empty → 0). Fields are at most 12 bytes, so the value is always a safe integer.
 * Returns -1 when Go would fail.
 */
export function parseOctal(b: Uint8Array, start: number, len: number): number {
  let s = start;
  let e = start + len;
  while (s < e && (b[s] === 0x20 || b[s] === 0)) s++;
  while (e > s && (b[e - 1] === 0x20 || b[e - 1] === 0)) e--;
  let x = 0;
  for (let i = s; i < e; i++) {
    const c = b[i] as number;
    if (c === 0) break;
    if (c < 0x30 || c > 0x37) return -1;
    x = x * 8 + (c - 0x30);
  }
  return x;
}

/** Go `parser.parseNumeric`: base-256 when the top bit of the first byte is set, else octal. `undefined` = Go error. */
export function parseNumeric(b: Uint8Array, start: number, len: number): Int64 | undefined {
  const first = b[start] as number;
  if ((first & 0x80) === 0) {
    const v = parseOctal(b, start, len);
    return v < 0 ? undefined : v;
  }
  const inv = (first & 0x40) !== 0 ? 0xff : 0;
  let x = 0n;
  for (let i = 0; i < len; i++) {
    let c = ((b[start + i] as number) ^ inv) & 0xff;
    if (i === 0) c &= 0x7f;
    if (x >> 56n > 0n) return undefined;
    x = (x << 8n) | BigInt(c);
  }
  if (x >> 63n > 0n) return undefined;
  const v = inv ? -x - 1n : x;
  return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v;
}

/** The unsigned byte sum of the block, the checksum field counted as spaces. */
function unsignedSum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += b[i] as number;
  for (let i = 148; i < 156; i++) sum -= b[i] as number;
  return sum + 8 * 0x20;
}

/** The signed (Sun tar) byte sum, the checksum field counted as spaces. */
function signedSum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : (b[i] as number);
    sum += c >= 0x80 ? c - 256 : c;
  }
  return sum;
}

function bytesEqual(b: Uint8Array, start: number, ascii: string): boolean {
  for (let i = 0; i < ascii.length; i++) if (b[start + i] !== ascii.charCodeAt(i)) return false;
  return true;
}

/** Go `block.getFormat`, or undefined when the checksum does not verify. */
export function detectFormat(b: Uint8Array): TarFormat | undefined {
  const stored = parseOctal(b, 148, 8);
  if (stored < 0 || (stored !== unsignedSum(b) && stored !== signedSum(b))) return undefined;
  if (bytesEqual(b, 257, 'ustar\0')) return bytesEqual(b, 508, 'tar\0') ? 'star' : 'ustar';
  if (bytesEqual(b, 257, 'ustar ') && bytesEqual(b, 263, ' \0')) return 'gnu';
  return 'v7';
}

function field(b: Uint8Array, start: number, len: number): Uint8Array {
  return cutAtNul(b.subarray(start, start + len));
}

function joinPrefix(prefix: Uint8Array, name: Uint8Array): Uint8Array {
  if (prefix.length === 0) return name;
  const out = new Uint8Array(prefix.length + 1 + name.length);
  out.set(prefix, 0);
  out[prefix.length] = 0x2f;
  out.set(name, prefix.length + 1);
  return out;
}

/**
 * Decode a non-zero header block. `at` is its offset in the uncompressed stream (for errors). Throws
 * `CorruptLayer` where Go's `readHeader` returns `ErrHeader`.
 */
export function parseHeader(b: Uint8Array, at: number): TarHeader {
  const format = detectFormat(b);
  if (format === undefined) throw new CorruptLayer('tar header checksum mismatch', at, 'uncompressed');
  let bad = false;
  const num = (start: number, len: number): Int64 => {
    const v = parseNumeric(b, start, len);
    if (v === undefined) {
      bad = true;
      return 0;
    }
    return v;
  };
  const h: TarHeader = {
    format,
    typeflag: b[156] as number,
    name: field(b, 0, 100),
    linkname: field(b, 157, 100),
    size: num(124, 12),
    mode: num(100, 8),
    uid: num(108, 8),
    gid: num(116, 8),
    mtime: num(136, 12),
    uname: EMPTY,
    gname: EMPTY,
    devmajor: 0,
    devminor: 0,
  };
  if (format !== 'v7') {
    h.uname = field(b, 265, 32);
    h.gname = field(b, 297, 32);
    h.devmajor = num(329, 8);
    h.devminor = num(337, 8);
    let prefix: Uint8Array = EMPTY;
    if (format === 'ustar') {
      prefix = field(b, 345, 155);
    } else if (format === 'star') {
      prefix = field(b, 345, 131);
      num(476, 12); // atime: not reported, but Go fails on a bad value
      num(488, 12); // ctime
    } else {
      // GNU: atime/ctime are parsed only when their first byte is non-zero; if either fails, Go treats
      // the header as a pre-Go1.8 one and reads the USTAR prefix field, when it is ASCII.
      const atimeBad = b[345] !== 0 && parseNumeric(b, 345, 12) === undefined;
      const ctimeBad = b[357] !== 0 && parseNumeric(b, 357, 12) === undefined;
      if (atimeBad || ctimeBad) {
        const p = field(b, 345, 155);
        if (p.every((c) => c < 0x80)) prefix = p;
      }
    }
    h.name = joinPrefix(prefix, h.name);
  }
  if (bad) throw new CorruptLayer('tar header has an unparsable numeric field', at, 'uncompressed');
  return h;
}
