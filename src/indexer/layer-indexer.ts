/**
 * One layer blob in, one zTOC out, in a single streaming pass (soci-format.md §4–§6).
 *
 * `LayerIndexer` is the synchronous core: feed it the blob's bytes in order with `write`, then call `end`.
 * Each chunk goes to the layer's sha256, to the gzip checkpointer (which hands the inflated bytes straight
 * to the tar TOC builder) or, for an uncompressed tar, to fixed-span digests and the TOC builder. Nothing
 * of the layer is retained: memory is the TOC, the checkpoint windows and one inflate buffer.
 *
 * Results: an indexed layer (`status: 'indexed'`, the zTOC bytes and their digest), a layer that gets no
 * zTOC (`status: 'skipped'`, with a stable `SkipCode` and a reason), or a thrown `CorruptLayer` for damaged
 * bytes (bad gzip, bad tar, digest or size mismatch). A corrupt layer never yields a zTOC.
 *
 * The worker pool splits the two sha256 passes off to the thread that reads the blob: with
 * `externalDigest` the caller hashes the layer, and with `ExternalSpanDigests` a gzip layer's span digests
 * are the caller's too (it is told of each checkpoint as it is placed, see `SpanDigester`); `endStream()`
 * then checks the stream and says how many spans the zTOC has, and `finish(digests)` encodes it.
 */
import { createHash, type Hash } from 'node:crypto';
import { CorruptLayer, LayerSkipped, isSkip, type SkipCode } from '../oci/errors.js';
import { layerCompression } from '../oci/media-types.js';
import { SOCI_DEFAULTS } from '../oci/media-types.js';
import type { Digest } from '../oci/digest.js';
import { GzipCheckpointer, encodeZinfoBlob, type EngineName } from './gzip/index.js';
import { TarTocBuilder } from './tar/index.js';
import { encodeZtoc, encodeTarZinfo, tarMaxSpanId } from './ztoc/index.js';
import type { Checkpoint, FileMetadata, Ztoc } from './types.js';

export interface IndexLayerOptions {
  /** The layer descriptor's media type; decides gzip vs uncompressed tar, or a skip. */
  mediaType: string;
  /** Uncompressed bytes per span (default 4 MiB). */
  spanSize?: number;
  /** `Ztoc.build_tool_identifier` (default `AWS SOCI CLI v0.2`, byte-identical to the soci CLI). */
  buildToolIdentifier?: string;
  /** Inflate engine (default: native when built, else JS). */
  engine?: EngineName;
  /** When given, the blob must hash to this digest, or the layer is corrupt. */
  expectedDigest?: string;
  /** When given, the blob must be exactly this long. */
  expectedSize?: number;
  /**
   * The caller hashes the blob itself (the worker pool does, on the reading thread, in parallel with the
   * inflate); `expectedDigest` is then the caller's to check and the result's `layerDigest` is empty.
   */
  externalDigest?: boolean;
  /** Gzip-bomb guard: no zTOC for a layer inflating past this many bytes (default 64 GiB). */
  maxUncompressedSize?: number;
  /** Gzip-bomb guard: no zTOC when uncompressed/compressed exceeds this once past 64 MiB (default 1100; deflate's own limit is ~1032). */
  maxRatio?: number;
}

export interface IndexedLayer {
  status: 'indexed';
  layerDigest: Digest;
  compressedSize: number;
  uncompressedSize: number;
  ztoc: Uint8Array;
  ztocDigest: Digest;
  spanCount: number;
  fileCount: number;
  /** Any `SCHILY.xattr.*` PAX record, or an opaque-directory marker (§1.2 `shouldDisableXattrs`). */
  needsXattrs: boolean;
}

export interface SkippedLayer {
  status: 'skipped';
  code: SkipCode;
  reason: string;
}

export type LayerIndexResult = IndexedLayer | SkippedLayer;

/** A gzip layer's span digests computed by the caller (the worker pool's reading thread). */
export interface ExternalSpanDigests {
  /** Each checkpoint as it is placed, in order; `endStream()` may still drop the newest one. */
  onCheckpoint(cp: Checkpoint): void;
}

/** A checked gzip layer whose zTOC waits for its span digests (one per span, in order). */
export interface PendingZtoc {
  status: 'pending';
  spanCount: number;
  finish(spanDigests: readonly string[]): IndexedLayer;
}

const DEFAULT_MAX_UNCOMPRESSED = 64 * 1024 ** 3;
const DEFAULT_MAX_RATIO = 1100;
const RATIO_FLOOR = 64 * 1024 * 1024;

/** Returns a skip result when the media type alone rules the layer out, else undefined. */
export function skipByMediaType(mediaType: string): SkippedLayer | undefined {
  const c = layerCompression(mediaType);
  if (c === 'gzip' || c === 'uncompressed') return undefined;
  return { status: 'skipped', code: 'UNSUPPORTED_COMPRESSION', reason: `unsupported layer media type ${mediaType}` };
}

export class LayerIndexer {
  readonly #opts: Required<Omit<IndexLayerOptions, 'expectedDigest' | 'expectedSize' | 'externalDigest'>> & Pick<IndexLayerOptions, 'expectedDigest' | 'expectedSize'>;
  readonly #compression: 'gzip' | 'uncompressed';
  readonly #hash: Hash | undefined;
  readonly #tar: TarTocBuilder;
  readonly #gzip: GzipCheckpointer | undefined;
  // uncompressed-tar span digests: the hasher of the span being filled and the finished digests
  #tarSpanHash: Hash | undefined;
  #tarSpanFill = 0;
  readonly #tarSpanDigests: string[] = [];
  #compressed = 0;
  #uncompressed = 0;
  #ended = false;
  readonly #externalSpans: boolean;
  #gzipDigests: string[] = [];
  readonly #onData = (out: Uint8Array): void => {
    this.#uncompressed += out.length;
    this.#checkBomb();
    if (!this.#tar.ended) this.#tar.write(out);
  };

  constructor(opts: IndexLayerOptions, externalSpans?: ExternalSpanDigests) {
    const skip = skipByMediaType(opts.mediaType);
    if (skip) throw new LayerSkipped(skip.code, skip.reason);
    this.#compression = layerCompression(opts.mediaType) as 'gzip' | 'uncompressed';
    this.#hash = opts.externalDigest ? undefined : createHash('sha256');
    this.#opts = {
      mediaType: opts.mediaType,
      spanSize: opts.spanSize ?? SOCI_DEFAULTS.spanSize,
      buildToolIdentifier: opts.buildToolIdentifier ?? SOCI_DEFAULTS.buildToolIdentifier,
      engine: opts.engine ?? 'auto',
      expectedDigest: opts.expectedDigest,
      expectedSize: opts.expectedSize,
      maxUncompressedSize: opts.maxUncompressedSize ?? DEFAULT_MAX_UNCOMPRESSED,
      maxRatio: opts.maxRatio ?? DEFAULT_MAX_RATIO,
    };
    if (!Number.isSafeInteger(this.#opts.spanSize) || this.#opts.spanSize <= 0) {
      throw new RangeError(`span size must be a positive integer, got ${this.#opts.spanSize}`);
    }
    this.#externalSpans = externalSpans !== undefined && this.#compression === 'gzip';
    if (this.#compression === 'gzip') {
      const gzip = new GzipCheckpointer({
        spanSize: this.#opts.spanSize, engine: this.#opts.engine,
        hashSpans: !this.#externalSpans, onCheckpoint: externalSpans?.onCheckpoint,
      });
      this.#gzip = gzip;
      this.#tar = new TarTocBuilder({ onEnd: (archiveSize: number) => gzip.limitCheckpoints(archiveSize) });
    } else {
      this.#tar = new TarTocBuilder();
    }
  }

  /** Feeds the next bytes of the blob. The chunk may be reused by the caller once this returns. */
  write(chunk: Uint8Array): void {
    if (this.#ended) throw new Error('LayerIndexer: write after end');
    if (chunk.length === 0) return;
    this.#hash?.update(chunk);
    this.#compressed += chunk.length;
    if (this.#opts.expectedSize !== undefined && this.#compressed > this.#opts.expectedSize) {
      throw new CorruptLayer(`layer is longer than its descriptor size ${this.#opts.expectedSize}`, this.#opts.expectedSize);
    }
    if (this.#gzip) {
      this.#gzip.write(chunk, this.#onData);
    } else {
      this.#writeTarSpans(chunk);
      this.#onData(chunk);
    }
  }

  /** True when span digests are the caller's (a gzip layer given `ExternalSpanDigests`). */
  get externalSpans(): boolean {
    return this.#externalSpans;
  }

  /** Bytes fed so far. */
  get compressedSize(): number {
    return this.#compressed;
  }

  /** True while the newest gzip checkpoint has no output after it, so `endStream()` may still drop it. */
  get lastCheckpointOpen(): boolean {
    return this.#gzip?.lastCheckpointOpen ?? false;
  }

  /** Ends the blob: verifies digest and size, and returns the zTOC or the reason there is none. */
  end(): LayerIndexResult {
    if (this.#externalSpans) throw new Error('LayerIndexer: span digests are external; use endStream() and finish()');
    const r = this.endStream();
    return r.status === 'pending' ? r.finish(this.#gzipDigests) : r;
  }

  /**
   * Ends the blob like `end()`, except that a gzip layer comes back `pending`: checked (stream, sizes,
   * digest, tar), its zTOC encoded by `finish` once the span digests are known.
   */
  endStream(): LayerIndexResult | PendingZtoc {
    if (this.#ended) throw new Error('LayerIndexer: end called twice');
    this.#ended = true;
    const layerDigest = this.#hash ? (`sha256:${this.#hash.digest('hex')}` as Digest) : ('' as Digest);
    if (this.#opts.expectedSize !== undefined && this.#compressed !== this.#opts.expectedSize) {
      throw new CorruptLayer(`layer is ${this.#compressed} bytes, its descriptor says ${this.#opts.expectedSize}`, this.#compressed);
    }
    if (this.#hash && this.#opts.expectedDigest !== undefined && layerDigest !== this.#opts.expectedDigest) {
      throw new CorruptLayer(`layer digest ${layerDigest} does not match ${this.#opts.expectedDigest}`, this.#compressed);
    }
    if (this.#compressed === 0) return { status: 'skipped', code: 'EMPTY_LAYER', reason: 'layer blob is empty' };

    if (this.#gzip) {
      // The gzip stream (trailer, CRC) is checked before the tar result is trusted. A tar without
      // end-of-archive blocks ends where the stream ends (§4.2).
      const archiveSize = this.#tar.ended ? (this.#tar.archiveSize as number) : this.#uncompressed;
      const zinfo = this.#gzip.end(archiveSize);
      const toc = this.#tar.end();
      this.#gzipDigests = zinfo.spanDigests;
      const spanCount = zinfo.checkpoints.length;
      let finished = false;
      return {
        status: 'pending',
        spanCount,
        finish: (spanDigests) => {
          if (finished) throw new Error('LayerIndexer: finish called twice');
          finished = true;
          if (spanDigests.length !== spanCount) throw new Error(`internal: ${spanDigests.length} span digests for ${spanCount} spans`);
          return this.#indexed({
            ...this.#ztocBase(toc),
            compressionAlgorithm: 'gzip',
            maxSpanId: spanCount - 1,
            spanDigests: [...spanDigests],
            checkpoints: encodeZinfoBlob(zinfo.checkpoints, this.#opts.spanSize),
          }, layerDigest);
        },
      };
    } else {
      const toc = this.#tar.end();
      if (this.#tarSpanHash && this.#tarSpanFill > 0) this.#tarSpanDigests.push(`sha256:${this.#tarSpanHash.digest('hex')}`);
      this.#tarSpanHash = undefined;
      const maxSpanId = tarMaxSpanId(this.#compressed, this.#opts.spanSize);
      if (this.#tarSpanDigests.length !== maxSpanId + 1) {
        throw new Error(`internal: ${this.#tarSpanDigests.length} tar span digests for max span id ${maxSpanId}`);
      }
      return this.#indexed({
        ...this.#ztocBase(toc),
        compressionAlgorithm: 'uncompressed',
        maxSpanId,
        spanDigests: this.#tarSpanDigests,
        checkpoints: encodeTarZinfo({ spanSize: this.#opts.spanSize, size: this.#compressed }),
      }, layerDigest);
    }
  }

  #indexed(ztoc: Ztoc, layerDigest: Digest): IndexedLayer {
    const bytes = encodeZtoc(ztoc);
    return {
      status: 'indexed',
      layerDigest,
      compressedSize: this.#compressed,
      uncompressedSize: this.#uncompressed,
      ztoc: bytes,
      ztocDigest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
      spanCount: ztoc.maxSpanId + 1,
      fileCount: ztoc.toc.length,
      needsXattrs: needsXattrs(ztoc.toc),
    };
  }

  #ztocBase(toc: { entries: FileMetadata[]; uncompressedArchiveSize: number }): Pick<Ztoc, 'version' | 'buildToolIdentifier' | 'compressedArchiveSize' | 'uncompressedArchiveSize' | 'toc'> {
    return {
      version: SOCI_DEFAULTS.ztocVersion,
      buildToolIdentifier: this.#opts.buildToolIdentifier,
      compressedArchiveSize: this.#compressed,
      uncompressedArchiveSize: toc.uncompressedArchiveSize,
      toc: toc.entries,
    };
  }

  #writeTarSpans(chunk: Uint8Array): void {
    const span = this.#opts.spanSize;
    let pos = 0;
    while (pos < chunk.length) {
      if (!this.#tarSpanHash) {
        this.#tarSpanHash = createHash('sha256');
        this.#tarSpanFill = 0;
      }
      const take = Math.min(span - this.#tarSpanFill, chunk.length - pos);
      this.#tarSpanHash.update(chunk.subarray(pos, pos + take));
      this.#tarSpanFill += take;
      pos += take;
      if (this.#tarSpanFill === span) {
        this.#tarSpanDigests.push(`sha256:${this.#tarSpanHash.digest('hex')}`);
        this.#tarSpanHash = undefined;
      }
    }
  }

  #checkBomb(): void {
    const { maxUncompressedSize, maxRatio } = this.#opts;
    if (this.#uncompressed > maxUncompressedSize) {
      throw new LayerSkipped('TOO_LARGE', `layer inflates past the ${maxUncompressedSize}-byte bound`);
    }
    if (this.#uncompressed > RATIO_FLOOR && this.#uncompressed > this.#compressed * maxRatio) {
      throw new LayerSkipped('TOO_LARGE', `layer inflates more than ${maxRatio}:1`);
    }
  }
}

/** §1.2 `shouldDisableXattrs`, inverted: true when the layer needs xattrs at mount time. */
export function needsXattrs(toc: readonly FileMetadata[]): boolean {
  for (const e of toc) {
    if (e.name.endsWith('.wh..wh..opq')) return true;
    for (const [k] of e.xattrs) if (k.startsWith('SCHILY.xattr.')) return true;
  }
  return false;
}

/**
 * Indexes a layer read from an async source (an HTTP body, a file stream). `LayerSkipped` becomes a
 * `skipped` result; `CorruptLayer` and source errors are thrown. On a skip the source is not drained.
 */
export async function indexLayer(source: AsyncIterable<Uint8Array>, opts: IndexLayerOptions): Promise<LayerIndexResult> {
  const early = skipByMediaType(opts.mediaType);
  if (early) return early;
  try {
    const indexer = new LayerIndexer(opts);
    for await (const chunk of source) indexer.write(chunk);
    return indexer.end();
  } catch (err) {
    if (isSkip(err)) return { status: 'skipped', code: err.code, reason: err.message };
    throw err;
  }
}
