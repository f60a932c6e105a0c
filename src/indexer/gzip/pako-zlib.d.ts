/**
 * Types for the parts of pako's low-level zlib port that js-engine.ts uses ('pako/lib/zlib/*.js',
 * CommonJS, untyped). Only the fields and functions read or written here are declared.
 */
declare module 'pako/lib/zlib/zstream.js' {
  class ZStream {
    input: Uint8Array | null;
    next_in: number;
    avail_in: number;
    total_in: number;
    output: Uint8Array | null;
    next_out: number;
    avail_out: number;
    total_out: number;
    msg: string;
    state: { hold: number; bits: number } | null;
    data_type: number;
  }
  export default ZStream;
}

declare module 'pako/lib/zlib/inflate.js' {
  import type ZStream from 'pako/lib/zlib/zstream.js';
  const inflate: {
    inflateInit2(strm: ZStream, windowBits: number): number;
    inflate(strm: ZStream, flush: number): number;
    inflateEnd(strm: ZStream): number;
    inflateSetDictionary(strm: ZStream, dictionary: Uint8Array): number;
  };
  export default inflate;
}
