/**
 * The native gzip engine: a thin adapter over the N-API addon built from native/gzip_engine.c
 * (binding.gyp, scripts/build-native.mjs) at <package root>/build/Release/soci_gzip.node. The addon
 * does the Z_BLOCK loop in C and writes results into the caller's Float64Array, so a call costs one
 * N-API transition per checkpoint candidate or full output buffer, not per deflate block.
 * `loadNativeEngine()` returns undefined when the addon is missing or does not load.
 *
 * Span restore goes through ISA-L's inflate (build/Release/soci_isal.node, native/isal_span.c) when that
 * addon is built: the same bytes as zlib's, about 1.5× faster (bench/gzip-engine.ts on the 791 MB
 * /usr/share layer: 755 vs 504 MB/s). Checkpointing stays on zlib, which alone stops at deflate block
 * boundaries.
 */
import { createRequire } from 'node:module';
import { ST_LENGTH, type BlockInflater, type GzipEngine } from './engine.js';

interface Addon {
  blockCreate(state: Float64Array): object;
  blockRun(h: object, input: Uint8Array, inPos: number, inEnd: number, output: Uint8Array, outPos: number, outEnd: number, minOut: number): void;
  blockMessage(h: object): string | null;
  blockClose(h: object): void;
  inflateSpan(input: Uint8Array, bits: number, window: Uint8Array, output: Uint8Array): number;
  zlibVersion: string;
}

class NativeBlockInflater implements BlockInflater {
  readonly state = new Float64Array(ST_LENGTH);
  readonly #addon: Addon;
  readonly #handle: object;

  constructor(addon: Addon) {
    this.#addon = addon;
    this.#handle = addon.blockCreate(this.state);
  }

  run(input: Uint8Array, inPos: number, inEnd: number, output: Uint8Array, outPos: number, outEnd: number, minOut: number): void {
    this.#addon.blockRun(this.#handle, input, inPos, inEnd, output, outPos, outEnd, minOut);
  }

  message(): string | undefined {
    return this.#addon.blockMessage(this.#handle) ?? undefined;
  }

  close(): void {
    this.#addon.blockClose(this.#handle);
  }
}

type SpanInflate = GzipEngine['inflateSpan'];

function load<T>(name: string): T | undefined {
  try {
    // src/indexer/gzip and dist/indexer/gzip are both three levels below the package root.
    return createRequire(import.meta.url)(`../../../build/Release/${name}.node`) as T;
  } catch {
    return undefined;
  }
}

let spanInflaters: { zlib?: SpanInflate; isal?: SpanInflate } | undefined;

/** The native span inflaters that load here: zlib's (soci_gzip) and ISA-L's (soci_isal). */
export function nativeSpanInflaters(): { zlib?: SpanInflate; isal?: SpanInflate } {
  if (spanInflaters === undefined) {
    const z = load<Addon>('soci_gzip');
    const i = load<Pick<Addon, 'inflateSpan'>>('soci_isal');
    spanInflaters = {
      ...(z ? { zlib: (input, bits, window, output) => z.inflateSpan(input, bits, window, output) } : {}),
      ...(i ? { isal: (input, bits, window, output) => i.inflateSpan(input, bits, window, output) } : {}),
    };
  }
  return spanInflaters;
}

let cached: GzipEngine | null | undefined;

/** The native engine, or undefined when build/Release/soci_gzip.node is absent or fails to load. */
export function loadNativeEngine(): GzipEngine | undefined {
  if (cached !== undefined) return cached ?? undefined;
  const addon = load<Addon>('soci_gzip');
  const spans = nativeSpanInflaters();
  const inflateSpan = spans.isal ?? spans.zlib;
  cached = addon && inflateSpan ? { name: 'native', createBlockInflater: () => new NativeBlockInflater(addon), inflateSpan } : null;
  return cached ?? undefined;
}
