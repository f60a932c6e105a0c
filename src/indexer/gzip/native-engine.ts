/**
 * The native gzip engine: a thin adapter over the N-API addon built from native/gzip_engine.c
 * (binding.gyp, scripts/build-native.mjs) at <package root>/build/Release/soci_gzip.node. The addon
 * does the Z_BLOCK loop in C and writes results into the caller's Float64Array, so a call costs one
 * N-API transition per checkpoint candidate or full output buffer, not per deflate block.
 * `loadNativeEngine()` returns undefined when the addon is missing or does not load.
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

let cached: GzipEngine | null | undefined;

/** The native engine, or undefined when build/Release/soci_gzip.node is absent or fails to load. */
export function loadNativeEngine(): GzipEngine | undefined {
  if (cached !== undefined) return cached ?? undefined;
  try {
    // src/indexer/gzip and dist/indexer/gzip are both three levels below the package root.
    const addon = createRequire(import.meta.url)('../../../build/Release/soci_gzip.node') as Addon;
    cached = {
      name: 'native',
      createBlockInflater: () => new NativeBlockInflater(addon),
      inflateSpan: (input, bits, window, output) => addon.inflateSpan(input, bits, window, output),
    };
  } catch {
    cached = null;
  }
  return cached ?? undefined;
}
