/**
 * Reads files out of a layer blob through its zTOC, touching only the spans a read needs
 * (soci-format.md §5.3, §6, §7.1). The blob is reached through a `RangeSource` (a local file, or HTTP
 * Range requests in the snapshotter); every span's compressed bytes are checked against `span_digests`
 * before they are inflated, so a wrong byte from the network is an error, never wrong file content.
 *
 * This is the zTOC consumer's contract, as soci-snapshotter implements it: span i covers the compressed
 * bytes [start(i), end(i)) and the uncompressed bytes [out_i, out_{i+1}); the whole span is inflated from
 * its checkpoint (raw inflate primed with `bits`, window as dictionary) and sliced.
 *
 * `fromBytes(bytes, { lazyToc: true })` is for readers that walk the TOC once (the snapshotter's tree
 * build): the zTOC is checked exactly as `decodeZtoc` checks it, but the TOC stays in the bytes and
 * `entries()` visits it through one reused view (ztoc/toc-view.ts); `ztoc.toc` decodes it into objects
 * only if something asks. With `tocChecked` as well (only when the caller knows that `scanToc` already
 * passed over exactly these bytes, e.g. on a worker thread), the TOC check is not run again here: the
 * view is made when first asked for.
 */
import { createHash } from 'node:crypto';
import { CorruptLayer } from '../oci/errors.js';
import { decodeZinfoBlob, inflateSpan, spansFromCheckpoints, type EngineName } from './gzip/index.js';
import { decodeTarZinfo, decodeZtoc, tarMaxSpanId, tarSpanRange } from './ztoc/index.js';
import { scanToc, tocVectorPosition, type TocView } from './ztoc/toc-view.js';
import type { Checkpoint, FileMetadata, Span, Ztoc } from './types.js';

/** Where the layer blob's bytes come from. `read(start, end)` returns exactly blob[start, end). */
export interface RangeSource {
  read(start: number, end: number): Promise<Uint8Array>;
}

/** Cleans a tar name the way soci builds its tree: no leading `./` or `/`, no trailing `/`. */
export function cleanName(name: string): string {
  let n = name;
  while (n.startsWith('./')) n = n.slice(2);
  n = n.replace(/^\/+/, '').replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

export class ZtocReader {
  readonly ztoc: Ztoc;
  readonly spans: readonly Span[];
  readonly #checkpoints: readonly Checkpoint[] | undefined;
  readonly #engine: EngineName;
  #byName: Map<string, FileMetadata> | undefined;
  #view: TocView | undefined;
  /** Makes `#view` on first use (`fromBytes` with `tocChecked`). */
  #makeView: (() => TocView) | undefined;

  constructor(ztoc: Ztoc, opts: { engine?: EngineName } = {}) {
    this.ztoc = ztoc;
    this.#engine = opts.engine ?? 'auto';
    if (ztoc.compressionAlgorithm === 'gzip') {
      const zinfo = decodeZinfoBlob(ztoc.checkpoints);
      if (zinfo.checkpoints.length !== ztoc.maxSpanId + 1) {
        throw new RangeError(`zTOC has ${zinfo.checkpoints.length} checkpoints for max span id ${ztoc.maxSpanId}`);
      }
      this.#checkpoints = zinfo.checkpoints;
      this.spans = spansFromCheckpoints(zinfo.checkpoints, ztoc.spanDigests, ztoc.compressedArchiveSize, ztoc.uncompressedArchiveSize);
    } else {
      const tz = decodeTarZinfo(ztoc.checkpoints);
      const max = tarMaxSpanId(tz.size, tz.spanSize);
      if (max !== ztoc.maxSpanId) throw new RangeError(`tar zinfo gives max span id ${max}, zTOC says ${ztoc.maxSpanId}`);
      this.spans = Array.from({ length: max + 1 }, (_, id) => {
        const r = tarSpanRange(id, tz.size, tz.spanSize);
        // The blob is the tar: a span's uncompressed range is its byte range. (Clamping the last span to
        // uncompressed_archive_size, which ends before the tar's padding, could make outEnd < outStart.)
        return { id, start: r.start, end: r.end, outStart: r.start, outEnd: r.end, digest: ztoc.spanDigests[id] ?? '' };
      });
    }
  }

  /**
   * Decodes and checks a zTOC. `lazyToc`: the TOC stays in `bytes` (see the header). `tocChecked` (with
   * `lazyToc`): trust that `scanToc` already passed over exactly these bytes; never set it otherwise.
   */
  static fromBytes(bytes: Uint8Array, opts: { engine?: EngineName; lazyToc?: boolean; tocChecked?: boolean } = {}): ZtocReader {
    const vector = opts.lazyToc ? tocVectorPosition(bytes) : -1;
    if (vector < 0) return new ZtocReader(decodeZtoc(bytes), opts);
    const view = opts.tocChecked === true ? undefined : scanToc(bytes, vector);
    // Everything but the TOC through the codec (its checks, its span rules): the TOC vector reads as
    // empty while it runs (synchronously; the bytes are restored before anyone else can see them).
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = dv.getUint32(vector, true);
    let z: Ztoc;
    dv.setUint32(vector, 0, true);
    try {
      z = decodeZtoc(bytes);
    } finally {
      dv.setUint32(vector, count, true);
    }
    let toc: FileMetadata[] | undefined;
    Object.defineProperty(z, 'toc', {
      enumerable: true,
      get: () => (toc ??= decodeZtoc(bytes).toc),
      set: (v: FileMetadata[]) => void (toc = v),
    });
    const reader = new ZtocReader(z, opts);
    reader.#view = view;
    if (view === undefined) reader.#makeView = () => scanToc(bytes, vector);
    return reader;
  }

  /**
   * The TOC entries sorted by offset: `ztoc.toc`, or with `lazyToc` one reused view object per visit
   * (valid until the next entry; copy what you keep).
   */
  entries(): Iterable<FileMetadata> {
    return this.tocView() ?? this.ztoc.toc;
  }

  /** The checked TOC read in place (`fromBytes` with `lazyToc`), for one-pass consumers; else undefined. */
  tocView(): TocView | undefined {
    if (this.#view === undefined && this.#makeView !== undefined) {
      this.#view = this.#makeView();
      this.#makeView = undefined;
    }
    return this.#view;
  }

  /** The entry named `path`, as stored in the TOC or cleaned (no leading `./` or `/`). Last one wins. */
  find(path: string): FileMetadata | undefined {
    if (!this.#byName) {
      this.#byName = new Map();
      for (const e of this.ztoc.toc) {
        this.#byName.set(e.name, e);
        this.#byName.set(cleanName(e.name), e);
      }
    }
    return this.#byName.get(path) ?? this.#byName.get(cleanName(path));
  }

  /** The span holding uncompressed offset `o`: the last span whose outStart ≤ o. */
  spanAt(o: number): number {
    let lo = 0;
    let hi = this.spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.spans[mid] as Span).outStart <= o) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Verifies fetched compressed bytes of a span against its digest. */
  verifySpan(id: number, compressed: Uint8Array): boolean {
    const span = this.spans[id] as Span;
    return `sha256:${createHash('sha256').update(compressed).digest('hex')}` === span.digest;
  }

  /** Inflates one span from its verified compressed bytes. */
  decompressSpan(id: number, compressed: Uint8Array): Uint8Array {
    const span = this.spans[id] as Span;
    if (this.ztoc.compressionAlgorithm === 'uncompressed') return compressed.subarray(0, span.outEnd - span.outStart);
    return inflateSpan((this.#checkpoints as readonly Checkpoint[])[id] as Checkpoint, compressed, span.outEnd - span.outStart, { engine: this.#engine });
  }

  /** Fetches, verifies and inflates one span. */
  async readSpan(src: RangeSource, id: number): Promise<Uint8Array> {
    const span = this.spans[id];
    if (!span) throw new RangeError(`span ${id} outside 0..${this.spans.length - 1}`);
    const compressed = await src.read(span.start, span.end);
    if (compressed.length !== span.end - span.start || !this.verifySpan(id, compressed)) {
      throw new CorruptLayer(`span ${id} does not match its digest ${span.digest}`, span.start);
    }
    return this.decompressSpan(id, compressed);
  }

  /** The uncompressed bytes [offset, offset + length) of the tar stream. */
  async readRange(src: RangeSource, offset: number, length: number, readSpan: (id: number) => Promise<Uint8Array> = (id) => this.readSpan(src, id)): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const first = this.spanAt(offset);
    const last = this.spanAt(offset + length - 1);
    let filled = 0;
    for (let id = first; id <= last; id++) {
      const span = this.spans[id] as Span;
      const data = await readSpan(id);
      const from = Math.max(offset, span.outStart) - span.outStart;
      const to = Math.min(offset + length, span.outEnd) - span.outStart;
      out.set(data.subarray(from, to), filled);
      filled += to - from;
    }
    if (filled !== length) throw new CorruptLayer(`read ${filled} of ${length} bytes at ${offset}`, offset, 'uncompressed');
    return out;
  }

  /** The whole content of a regular-file entry. */
  async readFile(src: RangeSource, entry: FileMetadata): Promise<Uint8Array> {
    return this.readRange(src, entry.uncompressedOffset, entry.uncompressedSize);
  }
}
