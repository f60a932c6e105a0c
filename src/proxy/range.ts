/**
 * HTTP Range for blobs (RFC 9110 §14). Lazy loading depends on it: a ranged GET must get a 206 with the
 * exact bytes, never a 200 (soci-format.md §6). One range is served; several are refused with 400 so that
 * soci's multi-range reader falls back to single ranges.
 */

export type RangeSpec = { kind: 'none' } | { kind: 'single'; start: number; end: number | undefined; suffix: number | undefined } | { kind: 'multi' } | { kind: 'invalid' };

export function parseRange(header: string | undefined): RangeSpec {
  if (header === undefined || header.trim() === '') return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m) return { kind: 'invalid' };
  const parts = (m[1] as string).split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) return { kind: 'invalid' };
  if (parts.length > 1) return { kind: 'multi' };
  const p = parts[0] as string;
  const r = /^(\d*)-(\d*)$/.exec(p);
  if (!r) return { kind: 'invalid' };
  const [, a, b] = r as unknown as [string, string, string];
  if (a === '' && b === '') return { kind: 'invalid' };
  if (a === '') return { kind: 'single', start: 0, end: undefined, suffix: Number(b) };
  const start = Number(a);
  const end = b === '' ? undefined : Number(b);
  if (!Number.isSafeInteger(start) || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) return { kind: 'invalid' };
  return { kind: 'single', start, end, suffix: undefined };
}

/** Resolves a single range against a known size: [start, endInclusive], or undefined when unsatisfiable. */
export function resolveRange(spec: Extract<RangeSpec, { kind: 'single' }>, size: number): { start: number; end: number } | undefined {
  if (spec.suffix !== undefined) {
    if (spec.suffix === 0 || size === 0) return undefined;
    return { start: Math.max(0, size - spec.suffix), end: size - 1 };
  }
  if (spec.start >= size) return undefined;
  return { start: spec.start, end: Math.min(spec.end ?? size - 1, size - 1) };
}

/** Cuts [start, end] (inclusive) out of a stream that starts at offset 0. */
export async function* sliceStream(source: AsyncIterable<Uint8Array>, start: number, end: number): AsyncGenerator<Uint8Array> {
  let pos = 0;
  for await (const chunk of source) {
    const cStart = pos;
    const cEnd = pos + chunk.length;
    pos = cEnd;
    if (cEnd <= start) continue;
    const from = Math.max(start, cStart) - cStart;
    const to = Math.min(end + 1, cEnd) - cStart;
    if (to > from) yield chunk.subarray(from, to);
    if (cEnd > end) return;
  }
}
