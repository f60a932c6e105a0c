/**
 * `FileMetadata.modTime` (soci-format.md §4.2): Go `time.Unix(sec, nsec).UTC().MarshalText()`, i.e. RFC 3339
 * in UTC with `Z`, up to 9 fractional digits with trailing zeros trimmed and no fraction when it is zero.
 * Go's `MarshalText` fails for years outside 0–9999 and soci ignores the error, writing an empty string;
 * so does this. Seconds are a full Go int64 (a bigint when not a safe integer).
 */

/** 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds. */
const MIN_SEC = -62167219200;
const MAX_SEC = 253402300799;

/** A one-entry cache of the last whole-second result. */
let lastSec = NaN;
let lastText = '';

/** Format `time.Unix(sec, nsec)` with `-1e9 < nsec < 1e9` (a negative nsec borrows a second, as Go does). */
export function formatModTime(sec: number | bigint, nsec = 0): string {
  if (!Number.isInteger(nsec) || nsec <= -1e9 || nsec >= 1e9) throw new RangeError(`nsec out of range: ${nsec}`);
  let s: number;
  if (typeof sec === 'number') {
    s = nsec < 0 ? sec - 1 : sec;
    if (s < MIN_SEC || s > MAX_SEC) return '';
  } else {
    const big = nsec < 0 ? sec - 1n : sec;
    if (big < BigInt(MIN_SEC) || big > BigInt(MAX_SEC)) return '';
    s = Number(big);
  }
  if (nsec < 0) nsec += 1e9;
  if (s === lastSec && nsec === 0) return lastText; // layers repeat one mtime a lot
  // Date covers years 0..9999 exactly; toISOString gives "YYYY-MM-DDTHH:MM:SS.sssZ" for them.
  const iso = new Date(s * 1000).toISOString();
  let out = iso.slice(0, 19);
  if (nsec !== 0) return `${out}.${String(nsec).padStart(9, '0').replace(/0+$/, '')}Z`;
  lastSec = s;
  lastText = `${out}Z`;
  return lastText;
}
