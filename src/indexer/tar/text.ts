/**
 * Byte strings of tar headers as JS strings. Go keeps tar names, link targets, user names and PAX records
 * as raw byte strings; a zTOC carries them as flatbuffer strings. A `FileMetadata` holds JS strings, which
 * can only carry valid UTF-8 exactly, so any other byte sequence is a `LayerSkipped('VALUE_OUT_OF_RANGE')`
 * rather than a silently replaced character (a U+FFFD would fail the snapshotter's header verification,
 * soci-format.md §7.1). Also the NUL-terminated C string cut that Go's `parser.parseString` applies.
 */
import { LayerSkipped } from '../../oci/errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `b` up to (not including) its first NUL byte, or all of `b`. A view, not a copy. */
export function cutAtNul(b: Uint8Array): Uint8Array {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

/** Decode `b` as UTF-8 (a leading BOM is kept), or skip the layer. `what` names the field for the message. */
export function decodeUtf8(b: Uint8Array, what: string): string {
  const n = b.length;
  if (n <= 64) {
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if ((b[i] as number) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, b as unknown as number[]);
  }
  try {
    return utf8.decode(b);
  } catch {
    throw new LayerSkipped('VALUE_OUT_OF_RANGE', `tar ${what} is not valid UTF-8 and cannot be carried exactly in a zTOC`);
  }
}

/** Each byte as one UTF-16 unit (latin1): an exact, reversible map key for raw byte strings. */
export function binaryString(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode.apply(null, b.subarray(i, i + 4096) as unknown as number[]);
  return s;
}

/** Byte order comparison (what Go's `sort.Strings` does to UTF-8 keys). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
